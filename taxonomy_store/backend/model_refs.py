"""Model references: the one table of what `--model` and a stored `Encoder.model_ref` may name.

A reference is stored with the encoder, so a database can move between machines; every process
that opens the store (the CLI, a `tstore` subprocess, the TUI, a server) resolves it here:

- `pkg:<package>/<folder>`: a folder inside an installed Python package (the default encoder);
- `cache:<folder>`: a folder in the model cache (`paths.model_cache_dir()`), e.g. the
  all-mpnet-base-v2 model that `tstore encoder install sbert-all` assembles;
- `hashing:<dimension>`: the deterministic hashing encoder (`hashing_encoder.py`): no weights,
  no torch, the same vectors everywhere. For tests and development only: its neighbours share
  words, not meaning, so its metrics say nothing about a taxonomy;
- anything else: a local sentence-transformers folder, stored as an absolute path (or an id
  already in the local Hugging Face cache, stored as its snapshot folder).

A new kind is one entry in `KINDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from taxonomy_store.backend.encoding import Encoder, LiveEncoder, Registered
from taxonomy_store.backend.hashing_encoder import HashingEncoder, hashing_fingerprint
from taxonomy_store.backend.model_folders import dimension_from_config, fingerprint, package_folder
from taxonomy_store.errors import EncoderError, EncoderMismatch, InvalidValue
from taxonomy_store.paths import model_cache_dir

HASHING_MAX_DIMENSION = 8192


@dataclass(frozen=True)
class ModelSpec:
    """What registering a model reference records: the reference as stored, its fingerprint, its dimension."""

    model_ref: str
    fingerprint: str
    dimension: int | None


class FolderKind:
    """Weights in a sentence-transformers folder, found by `locate(argument)`."""

    has_folder = True

    def __init__(self, prefix: str, locate: Callable[[str], Path], missing_hint: str | None = None):
        self.prefix = prefix
        self.locate = locate
        self.missing_hint = missing_hint

    def spec(self, arg: str) -> ModelSpec:
        folder = self.locate(arg)
        return ModelSpec(f"{self.prefix}{arg}", fingerprint(folder), dimension_from_config(folder))

    def folder(self, arg: str) -> Path:
        return self.locate(arg)

    def open(self, info: Registered, arg: str) -> Encoder:
        folder = self.locate(arg)
        if not folder.is_dir():
            hint = self.missing_hint or f"restore the folder, or `tstore encoder remove {info.name}` and add it again"
            raise EncoderError(f"the model folder of encoder {info.name!r} is gone: {folder}", hint)
        return LiveEncoder(info, folder)


def _package_folder(arg: str) -> Path:
    package, _, folder = arg.partition("/")
    return package_folder(package, folder)


def _cache_folder(arg: str) -> Path:
    return model_cache_dir() / arg


class HashingKind:
    """`hashing:<dimension>`: the deterministic hashing encoder, for tests and development."""

    prefix = "hashing:"
    has_folder = False

    @staticmethod
    def dimension(arg: str) -> int:
        if not arg.isdigit() or not 1 <= int(arg) <= HASHING_MAX_DIMENSION:
            raise InvalidValue(
                f"invalid hashing encoder reference 'hashing:{arg}'",
                f"give a dimension from 1 to {HASHING_MAX_DIMENSION}, e.g. hashing:384",
            )
        return int(arg)

    def spec(self, arg: str) -> ModelSpec:
        dim = self.dimension(arg)
        return ModelSpec(f"{self.prefix}{dim}", hashing_fingerprint(dim), dim)

    def folder(self, arg: str) -> Path:
        raise EncoderError(
            f"'hashing:{arg}' is the test encoder: it has no model folder",
            "tune, export or load a sentence-transformers encoder instead",
        )

    def open(self, info: Registered, arg: str) -> Encoder:
        encoder = HashingEncoder(self.dimension(arg))
        if info.fingerprint and info.fingerprint != encoder.fingerprint:
            raise EncoderMismatch(
                f"encoder {info.name!r} was registered with another version of the hashing scheme",
                f"its vectors came from the old scheme: `tstore encoder remove {info.name}` and add it again",
            )
        return encoder


class PathKind:
    """A local sentence-transformers folder (or a model id already in the local Hugging Face cache)."""

    prefix = ""
    has_folder = True

    def spec(self, arg: str) -> ModelSpec:
        folder = self.find(arg)
        return ModelSpec(str(folder), fingerprint(folder), dimension_from_config(folder))

    @staticmethod
    def find(text: str) -> Path:
        path = Path(text).expanduser()
        if path.exists():
            return path.resolve()
        if "/" in text and not text.startswith((".", "/")):
            try:  # an id such as sentence-transformers/all-MiniLM-L6-v2, only if already downloaded
                from huggingface_hub import snapshot_download

                return Path(snapshot_download(text, local_files_only=True))
            except Exception:
                pass
        raise EncoderError(
            f"no model folder at {text}",
            "give a local sentence-transformers folder; tstore never downloads models "
            "(for the paper's SBERT-all run `tstore encoder install sbert-all`)",
        )

    def folder(self, arg: str) -> Path:
        return Path(arg)

    def open(self, info: Registered, arg: str) -> Encoder:
        return FolderKind("", Path).open(info, arg)


ModelKind = FolderKind | HashingKind | PathKind

KINDS: dict[str, ModelKind] = {
    "pkg": FolderKind("pkg:", _package_folder),
    "cache": FolderKind("cache:", _cache_folder, "run `tstore encoder install sbert-all`"),
    "hashing": HashingKind(),
}
PATHS = PathKind()


def parse_model_ref(model_ref: str) -> tuple[ModelKind, str]:
    """(kind, argument) of a reference: `pkg:a/b` is (the pkg kind, `a/b`); a plain path is (PATHS, the path)."""
    text = str(model_ref)
    prefix, sep, rest = text.partition(":")
    if sep and prefix in KINDS:
        return KINDS[prefix], rest
    return PATHS, text


def model_spec(model: str) -> ModelSpec:
    """What registering `model` (as given to `encoder add --model`) records; EncoderError if it names nothing usable."""
    kind, arg = parse_model_ref(model)
    return kind.spec(arg)


def resolve_model_ref(model_ref: str) -> Path:
    """The weights folder a reference names (EncoderError for a kind without one, such as `hashing:`)."""
    kind, arg = parse_model_ref(model_ref)
    return kind.folder(arg)


def has_model_folder(model_ref: str) -> bool:
    return parse_model_ref(model_ref)[0].has_folder


def open_encoder(info: Registered) -> Encoder:
    """The running encoder of a registered one, checked against its registered fingerprint."""
    kind, arg = parse_model_ref(info.model_ref)
    return kind.open(info, arg)
