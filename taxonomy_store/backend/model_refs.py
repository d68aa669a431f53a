"""Model references: the one table of what `--model` and a stored `Encoder.model_ref` may name.

A reference is stored with the encoder, so a database can move between machines; every process
that opens the store (the CLI, a `tstore` subprocess, the TUI, a server) resolves it here:

- `pkg:<package>/<folder>`: a folder inside an installed Python package (the default encoder);
- `cache:<folder>`: a folder in the model cache (`paths.model_cache_dir()`), e.g. the
  all-mpnet-base-v2 model that `tstore encoder install sbert-all` assembles;
- `store:<folder>`: a folder inside the store directory (what `tstore adapt` makes, and any model
  folder given inside the store), so a copied or moved store uses its own copy;
- `combined:<ref>|<ref>...`: two or more of the references above used as one encoder, their unit
  vectors side by side (`combined_encoder.py`; `tstore encoder combine`). It has no folder of its own;
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

from taxonomy_store.backend.combined_encoder import PREFIX as COMBINED, SEPARATOR, CombinedEncoder, combined_fingerprint
from taxonomy_store.backend.encoding import Encoder, LiveEncoder, Registered
from taxonomy_store.backend.hashing_encoder import HashingEncoder, hashing_fingerprint
from taxonomy_store.backend.model_folders import STORE_REF, dimension_from_config, fingerprint, package_folder, store_relative_ref
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


class StoreKind:
    """`store:<folder>`: a folder inside the store directory; it resolves only against a store (`bound`)."""

    prefix = STORE_REF
    has_folder = True

    @staticmethod
    def bound(store_dir: str | Path | None) -> FolderKind:
        def locate(arg: str) -> Path:
            if not store_dir:
                raise EncoderError(f"model 'store:{arg}' lies inside a store, and no store was given to find it in")
            return Path(store_dir) / arg

        return FolderKind(STORE_REF, locate)

    def spec(self, arg: str) -> ModelSpec:
        return self.bound(None).spec(arg)

    def folder(self, arg: str) -> Path:
        return self.bound(None).folder(arg)

    def open(self, info: Registered, arg: str) -> Encoder:
        return self.bound(getattr(info, "store_dir", None)).open(info, arg)


@dataclass(frozen=True)
class _Part:
    """A part of a combined encoder as `open` needs it: its reference, no fingerprint of its own to check
    (the combined fingerprint covers every part)."""

    name: str
    model_ref: str
    device: str
    batch_size: int
    store_dir: str
    fingerprint: str | None = None
    dimension: int | None = None


class CombinedKind:
    """`combined:<ref>|<ref>...`: the parts' vectors side by side; the parts resolve against the store (`bound`)."""

    prefix = COMBINED
    has_folder = False

    def __init__(self, store_dir: str | Path | None = None):
        self.store_dir = store_dir

    def bound(self, store_dir: str | Path | None) -> "CombinedKind":
        return CombinedKind(store_dir)

    @staticmethod
    def parts(arg: str) -> list[str]:
        parts = arg.split(SEPARATOR)
        if len(parts) < 2 or not all(parts):
            raise InvalidValue(f"invalid combined encoder reference 'combined:{arg}'",
                               "it names two or more model references separated by '|'; use `tstore encoder combine`")
        if any(isinstance(parse_model_ref(p)[0], CombinedKind) for p in parts):
            raise InvalidValue("a combined encoder cannot contain another combined encoder", "combine the parts themselves")
        return parts

    def spec(self, arg: str) -> ModelSpec:
        specs = [model_spec(p, self.store_dir) for p in self.parts(arg)]
        dims = [s.dimension for s in specs]
        return ModelSpec(COMBINED + SEPARATOR.join(s.model_ref for s in specs), combined_fingerprint([s.fingerprint for s in specs]),
                         None if any(d is None for d in dims) else sum(d for d in dims if d is not None))

    def folder(self, arg: str) -> Path:
        raise EncoderError(
            "a combined encoder has no model folder of its own",
            "export, tune or load one of its parts instead (`tstore encoder list` shows its model reference)",
        )

    def open(self, info: Registered, arg: str) -> Encoder:
        store_dir = str(getattr(info, "store_dir", "") or "")
        parts = [_Part(f"{info.name}[{i}]", ref, info.device, info.batch_size, store_dir) for i, ref in enumerate(self.parts(arg))]
        return CombinedEncoder(info.name, [open_encoder(p) for p in parts], info.fingerprint)


ModelKind = FolderKind | HashingKind | PathKind | StoreKind | CombinedKind

KINDS: dict[str, ModelKind] = {
    "pkg": FolderKind("pkg:", _package_folder),
    "cache": FolderKind("cache:", _cache_folder, "run `tstore encoder install sbert-all`"),
    "hashing": HashingKind(),
    "store": StoreKind(),
    "combined": CombinedKind(),
}
PATHS = PathKind()


def parse_model_ref(model_ref: str) -> tuple[ModelKind, str]:
    """(kind, argument) of a reference: `pkg:a/b` is (the pkg kind, `a/b`); a plain path is (PATHS, the path)."""
    text = str(model_ref)
    prefix, sep, rest = text.partition(":")
    if sep and prefix in KINDS:
        return KINDS[prefix], rest
    return PATHS, text


def _in_store(model_ref: str, store_dir: str | Path | None) -> tuple[ModelKind, str]:
    kind, arg = parse_model_ref(model_ref)
    return (kind.bound(store_dir) if isinstance(kind, (StoreKind, CombinedKind)) else kind), arg


def combined_parts(model_ref: str) -> list[str] | None:
    """The part references of a combined encoder's reference; None for any other kind."""
    kind, arg = parse_model_ref(model_ref)
    return kind.parts(arg) if isinstance(kind, CombinedKind) else None


def combined_ref(part_refs: list[str]) -> str:
    for ref in part_refs:
        if SEPARATOR in ref:
            raise InvalidValue(f"the model reference {ref!r} contains {SEPARATOR!r}, which separates the parts of a combined encoder",
                               "move that model to a folder whose path has no '|' and add it again")
    return COMBINED + SEPARATOR.join(part_refs)


def model_spec(model: str, store_dir: str | Path | None = None) -> ModelSpec:
    """What registering `model` (as given to `encoder add --model`) records; EncoderError if it names nothing usable.
    A folder inside `store_dir` is recorded relative to it (`store:...`): the store stays relocatable."""
    kind, arg = _in_store(model, store_dir)
    spec = kind.spec(arg)
    if isinstance(kind, PathKind):
        relative = store_relative_ref(Path(spec.model_ref), store_dir)
        if relative is not None:
            return ModelSpec(relative, spec.fingerprint, spec.dimension)
    return spec


def resolve_model_ref(model_ref: str, store_dir: str | Path | None = None) -> Path:
    """The weights folder a reference names (EncoderError for a kind without one, such as `hashing:`)."""
    kind, arg = _in_store(model_ref, store_dir)
    return kind.folder(arg)


def has_model_folder(model_ref: str) -> bool:
    return parse_model_ref(model_ref)[0].has_folder


def open_encoder(info: Registered) -> Encoder:
    """The running encoder of a registered one, checked against its registered fingerprint."""
    kind, arg = parse_model_ref(info.model_ref)
    return kind.open(info, arg)
