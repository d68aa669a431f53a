"""A registered encoder as the parts and the backend pass it around (a frozen copy of its row)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timezone
from pathlib import Path
from typing import Any

from taxonomy_store.db.models import Encoder
from taxonomy_store.backend.model_refs import resolve_model_ref


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
    # The store directory `store:` model refs are relative to.
    store_dir: str = ""

    @property
    def model_path(self) -> Path:
        """The weights folder (EncoderError for the `hashing:` test encoder, which has none)."""
        return resolve_model_ref(self.model_ref, self.store_dir or None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def info_from_row(row: Encoder, store_dir: str | Path | None = None) -> EncoderInfo:
    created = row.created_at
    if created is not None and created.tzinfo is not None:
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
        store_dir=str(store_dir or ""),
    )


