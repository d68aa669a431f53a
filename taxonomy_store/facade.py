"""The typed seam: what the TUI and the HTTP server may call on an open store.

`Store` (store.py) offers all of it and more; the interfaces are written against `StoreFacade`,
so mypy says when one reaches for something this list does not name, and a part's signature
change that would break them shows up here first. Each part is named by what the interfaces use
of it, nothing else. Imports are for the type checker only: importing this module loads no part.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Protocol, Sequence

if TYPE_CHECKING:
    from taxonomy_store.crosswalks.mappings import CrosswalkRowView
    from taxonomy_store.crosswalks.proposals import CrosswalkReport
    from taxonomy_store.curation.edits import PairView, PromptView, UndoResult
    from taxonomy_store.curation.pair_mining import Proposal
    from taxonomy_store.transfer.exports import ExportResult
    from taxonomy_store.transfer.imports import ImportSummary
    from taxonomy_store.curation.review import LabelIssue, MetricsOverview, ReviewNeighbour, Suspect
    from taxonomy_store.embeddings.encoders import EncoderInfo
    from taxonomy_store.embeddings.indexing import EmbedSummary
    from taxonomy_store.guard.calibration import Calibration
    from taxonomy_store.guard.querying import QueryResult
    from taxonomy_store.measurement.engine import RunResult
    from taxonomy_store.taxonomy.trees import TaxonomyTree

# progress(stage, done, total)
Progress = Callable[[str, int, int], None] | None


class TaxonomiesFacade(Protocol):
    def list(self) -> list[dict[str, Any]]: ...

    def tree(self, name: str) -> TaxonomyTree: ...


class CurationFacade(Protocol):
    def list_prompts(self, *, limit: int | None = ..., offset: int = ..., **filters: Any) -> list[PromptView]: ...

    def count_prompts(self, **filters: Any) -> int: ...

    def get_prompt(self, prompt_id: int) -> PromptView: ...

    def update_prompt(self, prompt_id: int, *, text: str | None = ..., label: str | None = ..., category: str | None = ...,
                      taxonomy: str | None = ...) -> PromptView: ...

    def delete_prompt(self, prompt_id: int) -> PromptView: ...

    def update_prompts(self, changes: dict[int, dict[str, Any]]) -> list[PromptView]: ...

    def create_pair(self, unsafe_prompt_id: int, *, safe_prompt_id: int | None = ..., safe_text: str | None = ...,
                    pair_type: str | None = ..., pair_set: str = ..., kind: str = ...) -> PairView: ...

    def list_pairs(self, *, status: str | None = ..., pair_type: str | None = ..., pair_set: str | None = ...,
                   limit: int | None = ...) -> list[PairView]: ...

    def get_pair(self, pair_id: int) -> PairView: ...

    def decide_pair(self, pair_id: int, status: str, note: str | None = ...) -> PairView: ...

    def undo(self, batch_id: str | None = ..., *, cascade: bool = ...) -> UndoResult: ...


class ReviewFacade(Protocol):
    def suspects(self, encoder: str, *, by: str = ..., taxonomy: str = ..., level: str | None = ..., k: int = ...,
                 limit: int = ..., max_purity: float = ...) -> list[Suspect]: ...

    def label_issues(self, encoder: str, *, limit: int = ...) -> list[LabelIssue]: ...

    def neighbours(self, prompt_id: int, *, encoder: str, k: int = ...) -> list[ReviewNeighbour]: ...

    def pair_similarities(self, unsafe_prompt_id: int, safe_prompt_id: int) -> dict[str, float | None]: ...

    def metrics_overview(self, *, taxonomy: str = ..., level: str | None = ..., k: int = ...) -> MetricsOverview: ...

    def missing_vectors(self, encoder: str) -> int: ...

    def datasets(self) -> list[str]: ...

    def revision(self) -> tuple: ...

    def category_scores(self, encoder: str, *, taxonomy: str, k: int = ...) -> dict[str, float]: ...


class EncodersFacade(Protocol):
    def list(self) -> list[EncoderInfo]: ...

    def get(self, name: str) -> EncoderInfo: ...

    def default_name(self) -> str: ...


class EmbeddingsFacade(Protocol):
    def embed(self, encoder: str | None = ..., *, all: bool = ..., progress: Callable[[str, int, int], None] | None = ...,
              batch_size: int | None = ..., wait: bool = ..., on_wait: Callable[[str], None] | None = ...) -> EmbedSummary: ...

    def reopen(self) -> None: ...


class MetricRunsFacade(Protocol):
    def compute(self, metric: str | Sequence[str], *, encoder: str | None = ..., k: int = ..., level: str | int = ...,
                taxonomy: str = ..., pair_set: str | None = ..., weighting: str = ..., progress: Progress = ...,
                reestimate_baseline: bool | None = ...) -> list[RunResult]: ...

    def compute_all(self, *, encoders: list[str] | None = ..., taxonomy: str = ..., level: str | None = ..., k: int = ...,
                    progress: Progress = ...) -> list[RunResult]: ...

    def latest(self) -> list[RunResult]: ...


class GuardFacade(Protocol):
    def query(self, texts: list[str], *, encoder: str | None = ..., k: int = ..., level: str | None = ...,
              taxonomy: str | None = ..., dataset: str | list[str] | None = ..., label: str | list[str] | None = ...,
              category: str | list[str] | None = ..., ids: list[Any] | None = ...) -> list[QueryResult]: ...

    def calibration(self, encoder: str | None = ...) -> Calibration | None: ...

    def calibrate(self, encoder: str | None = ..., *, target_fpr: float | None = ..., max_f1: bool = ..., k: int = ...,
                  margin: float = ..., scorer: str | None = ...) -> Calibration: ...


class ImportsFacade(Protocol):
    def import_file(self, path: str | Path, *, format: str | None = ..., dataset: str | None = ..., taxonomy: str | None = ...,
                    mapping: dict[str, str] | None = ..., label: str | None = ..., create_categories: bool = ...,
                    dry_run: bool = ..., progress: Progress = ..., on_wait: Callable[[], None] | None = ...) -> ImportSummary: ...


class ExportsFacade(Protocol):
    def export_prompts(self, out: str | Path | IO | None, *, format: str = ..., **filters: Any) -> ExportResult: ...

    def export_pairs(self, out: str | Path | IO | None, *, format: str = ..., **filters: Any) -> ExportResult: ...


class EvaluationFacade(Protocol):
    def evaluate(self, *, encoder: str | None = ..., holdout: list[str] | tuple[str, ...] = ..., fraction: float | None = ...,
                 seed: int = ..., by_dataset: bool = ..., k: int = ..., margin: float = ..., scorer: str | None = ...,
                 progress: Progress = ...) -> RunResult: ...


class PairMiningFacade(Protocol):
    def propose(self, *, encoder: str, taxonomy: str = ..., limit: int = ..., write: bool = ...,
                progress: Progress = ...) -> list[Proposal]: ...


class CrosswalksFacade(Protocol):
    def propose(self, source: str, target: str, *, level: str | None = ..., source_level: str | None = ...,
                encoder: str | None = ..., k: int = ...) -> CrosswalkReport: ...

    def decide(self, report: CrosswalkReport, *, accept: Sequence[str] = ..., reject: Sequence[str] = ..., save: bool = ...,
               note: str | None = ...) -> list[CrosswalkRowView]: ...

    def undo(self, batch_id: str | None = ...) -> dict[str, Any]: ...


class StoreFacade(Protocol):
    """An open store as the TUI and the HTTP server see it (`Store` implements it)."""

    @property
    def taxonomies(self) -> TaxonomiesFacade: ...

    @property
    def curation(self) -> CurationFacade: ...

    @property
    def review(self) -> ReviewFacade: ...

    @property
    def encoders(self) -> EncodersFacade: ...

    @property
    def embeddings(self) -> EmbeddingsFacade: ...

    @property
    def metric_runs(self) -> MetricRunsFacade: ...

    @property
    def guard(self) -> GuardFacade: ...

    @property
    def crosswalks(self) -> CrosswalksFacade: ...

    @property
    def imports(self) -> ImportsFacade: ...

    @property
    def exports(self) -> ExportsFacade: ...

    @property
    def evaluation(self) -> EvaluationFacade: ...

    @property
    def pair_mining(self) -> PairMiningFacade: ...

    def data_revision(self) -> int: ...

    def close(self) -> None: ...
