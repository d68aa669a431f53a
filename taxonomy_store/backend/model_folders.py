"""Model folders: a sentence-transformers folder's weights, their fingerprint, their dimension.

Which folder a stored model reference (`pkg:`, `cache:`, `store:`, a path) names: `model_refs.py`.

Nothing here imports torch or sentence-transformers: the fingerprint is a sha256 of the weight
files, the dimension comes from the folder's JSON configs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from taxonomy_store.errors import EncoderError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def package_folder(package: str, folder: str) -> Path:
    """A folder inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError(f"the Python package {package!r} is not installed", f"pip install {package.replace('_', '-')}")
    return Path(list(spec.submodule_search_locations)[0]) / folder


STORE_REF = "store:"


def store_relative_ref(folder: Path, store_dir: str | Path | None) -> str | None:
    """`store:<relative path>` for a folder inside the store directory, else None."""
    if not store_dir:
        return None
    try:
        rel = folder.resolve().relative_to(Path(store_dir).resolve())
    except ValueError:
        return None
    return STORE_REF + rel.as_posix()


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


