"""`tstore adapt`: tune a copy of an encoder on the store's curated data, register it, compare.

Order of work, so an interrupted run leaves no half-registered encoder:
1. read the curated data (and the held-out split, if asked);
2. train into a temporary folder under `<store>/models/`; an exception or Ctrl-C removes it;
   beside the weights goes `tstore-training.json`, the texts it trained on (with those FROM
   was trained on): calibration and evaluation call a figure held out only on other prompts;
3. rename the finished folder to `<store>/models/NEW` (atomic on one file system);
4. only then register NEW (fingerprint, dimension, the encoder it came from, the recipe);
5. embed the store with NEW (and with FROM where its vectors are missing), then compare.
A folder left at step 3 by an interrupted run has no registry row; the next adapt of that name
replaces it.

`export` writes any registered encoder as a plain sentence-transformers folder.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from taxonomy_store.adapt.data import CuratedSet, everyday_texts, holdout_split, read_curated, training_data, with_everyday
from taxonomy_store.adapt.report import compare
from taxonomy_store.adapt.methods import train
from taxonomy_store.adapt.training import AdaptConfig, resolved, steps_per_epoch
from taxonomy_store.backend.training_manifest import HASH_CHARS, MANIFEST, read_manifest, write_manifest
from taxonomy_store.errors import EncoderError, InvalidValue, NotFound, OutputFileError, UnknownEncoder

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from taxonomy_store.embeddings.encoders import Encoders
    from taxonomy_store.embeddings.indexing import Embeddings
    from taxonomy_store.measurement.runs import MetricRuns

MODELS_DIR = "models"
# progress(stage, done, total): stages "train" (steps) and the index's embed stages.
Progress = Callable[[str, int, int], None] | None


@dataclass
class AdaptResult:
    name: str
    adapted_from: str
    model_dir: str
    held_out: bool
    figures: dict[str, dict[str, Any]]
    training: dict[str, Any]
    seconds: float
    trained_prompts: int = 0  # distinct texts it trained on (FROM's included): never held out for it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Adaptation:
    """Tuning encoders on the store's data; its collaborators are the registry and the index."""

    def __init__(self, *, store_dir: Path, read: Callable[[], AbstractContextManager["Session"]],
                 encoders: "Encoders", embeddings: "Embeddings", metric_runs: "MetricRuns | None" = None):
        self.store_dir = Path(store_dir)
        self.metric_runs = metric_runs
        self.read = read
        self.encoders = encoders
        self.embeddings = embeddings

    @property
    def models_dir(self) -> Path:
        return self.store_dir / MODELS_DIR

    def _check_names(self, source: str, new: str) -> None:
        self.encoders.get(source)
        try:
            self.encoders.get(new)
        except UnknownEncoder:
            pass
        else:
            raise EncoderError(f"encoder {new!r} is already registered",
                               f"pick another --name, or remove it first (`tstore encoder remove {new}`)")
        folder = self.models_dir / new
        if folder.exists() or folder.is_symlink():
            # Not ours to replace: a user's files, or the weights another encoder was added from.
            raise EncoderError(f"{folder} already exists; adapt never replaces a folder",
                               f"pick another --name, or move or remove that folder yourself (rm -r {folder})")

    def _clean_partials(self, new: str) -> None:
        """Folders left by killed runs of the same name: stale, since the name's lock is held."""
        pattern = re.compile(rf"\.partial-{re.escape(new)}-[A-Za-z0-9_]{{8}}")
        if self.models_dir.is_dir():
            for entry in self.models_dir.iterdir():
                if pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)

    def _data(self, taxonomy: str, level: str | int) -> CuratedSet:
        with self.read() as s:
            data = read_curated(s, taxonomy=taxonomy, level=level)
        if len(set(data.categories[(data.labels == "unsafe") & (data.categories != "")].tolist())) < 2:
            raise NotFound(f"the store holds unsafe prompts of fewer than two {data.level} categories",
                           "import a dataset with categories, e.g. `tstore import do_not_answer.csv`")
        return data

    def adapt(self, source: str, new: str, *, taxonomy: str = "do-not-answer", level: str | int = "harm_type",
              epochs: int | None = None, seed: int = 0, device: str = "cpu", holdout_fraction: float | None = None,
              max_steps: int | None = None, anchor: float | None = None, label_weight: float | None = None,
              aim_swaps: bool = True, everyday: bool = True, progress: Progress = None) -> AdaptResult:
        """anchor, label_weight: the weights of the anchor and label terms (None: the method's default);
        aim_swaps: the sensitivity term's swaps aimed at what the harm word is aimed at (AdaptConfig.swap_target);
        everyday: train on the built-in everyday requests too (AdaptConfig.everyday)."""
        from taxonomy_store.embeddings.encoders import _check_name

        t0 = time.perf_counter()
        _check_name(new)
        if holdout_fraction is not None and not 0.0 < holdout_fraction < 1.0:
            raise InvalidValue(f"--holdout-fraction must lie strictly between 0 and 1, not {holdout_fraction}")
        if epochs is not None and epochs < 1:
            raise InvalidValue(f"--epochs must be at least 1, not {epochs}")
        for flag, weight in (("--anchor", anchor), ("--label-weight", label_weight)):
            if weight is not None and not (np.isfinite(weight) and weight >= 0.0):
                raise InvalidValue(f"{flag} must be a finite number of at least 0, not {weight}")
        cfg = AdaptConfig(epochs=epochs, seed=seed, device=device, max_steps=max_steps,
                          w_anchor=None if anchor is None else float(anchor), swap_target=aim_swaps, everyday=everyday)
        if label_weight is not None:
            cfg.w_label = float(label_weight)
        with self._claim(new):
            self._check_names(source, new)
            return self._adapt(source, new, taxonomy, level, cfg, holdout_fraction, progress, t0)

    @contextmanager
    def _claim(self, new: str) -> Iterator[None]:
        """Hold `<store>/models/.locks/NEW.lock` while NEW is made: a second `adapt` of the same name fails
        at once instead of replacing the first one's folder. (The empty lock file stays, as filelock's do.)"""
        from filelock import FileLock, Timeout

        locks = self.models_dir / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(locks / f"{new}.lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise EncoderError(f"another `tstore adapt` is already making {new!r} in this store",
                               "wait for it to finish, or pick another --name") from None
        try:
            yield
        finally:
            lock.release()

    def _adapt(self, source: str, new: str, taxonomy: str, level: str | int, cfg: AdaptConfig,
               holdout_fraction: float | None, progress: Progress, t0: float) -> AdaptResult:
        info = self.encoders.get(source)
        data = self._data(taxonomy, level)
        train_ids, held_ids = holdout_split(data, holdout_fraction, cfg.seed)
        tdata, extra = training_data(data, train_ids), list[str]()
        if cfg.everyday:
            tdata, extra = with_everyday(tdata, everyday_texts())
        # FROM's stored vectors are what the adapter method starts from: no text is encoded twice
        # (the layer method runs FROM's lower layers over the training texts itself; the adapter
        # encodes for itself when texts from outside the store train too).
        x_from = self._vectors(source, data, progress)
        row = {t: n for n, t in enumerate(data.texts)}
        record = self._record(info, data, train_ids, held_ids, holdout_fraction, cfg.seed, extra)
        folder, summary = self._train(info.model_path, new, tdata, cfg, progress,
                                      frozen=None if extra else (lambda texts: x_from[[row[t] for t in texts]]), record=record)
        recipe = {"config": {k: v for k, v in asdict(resolved(cfg)).items() if k != "extra"}, "training": summary,
                  "taxonomy": taxonomy, "level": data.level, "holdout_fraction": holdout_fraction,
                  "held_out_prompts": len(held_ids), "from_fingerprint": info.fingerprint,
                  "trained_prompts": record["trained_prompts"], "everyday_texts": len(extra), "training_record": MANIFEST}
        try:
            self.encoders.add(new, f"store:{MODELS_DIR}/{new}", device=cfg.device, batch_size=info.batch_size, _reason=f"adapt {new} from {source}",
                              adapted_from=source, adaptation=recipe)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        figures = self._compare(x_from, new, data, train_ids, held_ids, progress)
        if self.metric_runs is not None:
            # Stored runs of NEW (and FROM, on the same data revision) for `tstore metrics` and
            # the TUI's metrics screen, which shows NEW beside its base.
            for name in (source, new):
                self.metric_runs.compute("all", encoder=name, taxonomy=taxonomy, level=level)
        return AdaptResult(name=new, adapted_from=source, model_dir=str(folder), held_out=bool(held_ids),
                           figures=figures, training=summary, seconds=round(time.perf_counter() - t0, 1),
                           trained_prompts=record["trained_prompts"])

    @staticmethod
    def _record(info, data: CuratedSet, train_ids: set[int], held_ids: set[int], fraction: float | None,
                seed: int, extra: list[str] | None = None) -> dict[str, Any]:
        """What the new encoder trains on (text hashes and prompt ids, and the hashes of texts from outside the
        store, such as the everyday set), with what FROM itself trained on: a prompt FROM was tuned on is no
        held-out prompt for NEW either, and an everyday text imported later is no held-out prompt."""
        from taxonomy_store.text import text_sha256

        hashes = {text_sha256(data.text(pid)) for pid in train_ids} | {text_sha256(t) for t in extra or ()}
        inherited = read_manifest(info.model_path)
        if inherited is not None:
            hashes |= set(inherited.get("trained_text_sha256") or ())
        return {"trained_hashes": hashes, "trained_ids": train_ids, "held_out": len(held_ids), "holdout_fraction": fraction,
                "seed": seed, "inherited_from": info.name if inherited is not None else None,
                "trained_prompts": len({h[:HASH_CHARS] for h in hashes})}

    def _train(self, model_path: Path, new: str, tdata, cfg: AdaptConfig, progress: Progress, frozen,
               record: dict[str, Any] | None = None) -> tuple[Path, dict]:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        final = self.models_dir / new
        tmp = Path(tempfile.mkdtemp(prefix=f".partial-{new}-", dir=self.models_dir))
        try:
            per = steps_per_epoch(tdata, cfg)

            def step(done: int, total: int, _losses: dict) -> None:
                # one bar per epoch, its steps within the epoch (a run cut by max_steps ends early)
                if progress:
                    epoch = (done - 1) // per
                    epochs = -(-total // per)
                    progress(f"train epoch {epoch + 1}/{epochs}", done - epoch * per, min(per, total - epoch * per))

            def lower(done: int, total: int) -> None:
                if progress:
                    progress("train: frozen layers over the training texts", done, total)

            summary = train(model_path, tdata, cfg, tmp / "model", progress=step, encode_progress=lower, frozen=frozen)
            if record is not None:  # written before the rename: the folder never lacks its record
                write_manifest(tmp / "model", **{k: v for k, v in record.items() if k != "trained_prompts"})
            _usual_permissions(tmp / "model")
            if final.exists() or final.is_symlink():  # made by someone else while this one trained
                raise EncoderError(f"{final} appeared while adapt ran; nothing was replaced", "run again with another --name")
            (tmp / "model").rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._clean_partials(new)
        return final, summary

    def _vectors(self, name: str, data: CuratedSet, progress: Progress) -> np.ndarray:
        self.embeddings.embed(name, progress=(lambda stage, done, total: progress(f"embed {stage}", done, total)) if progress else None)
        return self.embeddings.load_vectors(name, prompt_ids=data.ids.tolist()).take(data.ids.tolist())

    def _compare(self, x_from: np.ndarray, new: str, data: CuratedSet, train_ids: set[int], held_ids: set[int],
                 progress: Progress) -> dict[str, dict[str, Any]]:
        x_new = self._vectors(new, data, progress)
        if held_ids:
            return compare(x_from, x_new, data, held_ids, train_ids)
        return compare(x_from, x_new, data, set(data.ids.tolist()), None)

    def export(self, name: str, target: str | Path) -> Path:
        """Copy the encoder's model folder to target (a new or empty directory), loadable by SentenceTransformer."""
        info = self.encoders.get(name)
        src = info.model_path
        target = Path(target)
        _check_export_target(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".export-{name}-", dir=target.parent))
        try:
            shutil.copytree(src, tmp / "model", symlinks=False)
            _usual_permissions(tmp / "model")
            if target.exists():
                target.rmdir()
            (tmp / "model").rename(target)
        except OSError as exc:
            raise OutputFileError(target, f"cannot write the model there: {exc.strerror or exc}", "pick a new directory") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target


def _check_export_target(target: Path) -> None:
    """A new or empty directory whose parent is (or can be made) a directory; anything else is a
    clear error, never a raw NotADirectoryError, and nothing is created or removed."""
    if target.is_symlink() and not target.is_dir():
        raise OutputFileError(target, "is a symbolic link to something that is not a directory", "pick a new directory")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OutputFileError(target, "exists and is not an empty directory", "pick a new directory")
    for parent in (target.parent, *target.parent.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputFileError(target, f"{parent} is not a directory", "pick a path whose folders are directories")
            break
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFileError(target, f"cannot create {target.parent}: {exc.strerror or exc}", "pick a directory this user can write") from None


def _usual_permissions(folder: Path) -> None:
    """What a user's own `cp -r` would give (0666/0777 less the umask): the temporary folder the
    model was trained in is private (0700), and the model must be readable like any other file."""
    mask = os.umask(0)
    os.umask(mask)
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            path = os.path.join(root, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.chmod(path, 0o666 & ~mask)
