"""`tstore demo`: a store built from our own demo set, on the embedded defaults.

Only facade calls: init, taxonomies, imports, embed. The CLI prints the metrics and a query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from taxonomy_store.paths import package_dir
from taxonomy_store.store import Store, init_store
from taxonomy_store.vocabulary import DO_NOT_ANSWER_TAXONOMY, PAIR_TYPES_TAXONOMY

if TYPE_CHECKING:
    from taxonomy_store.embeddings.indexing import EmbedSummary

Progress = Callable[[str, int, int], None]
Say = Callable[[str], None]

DEMO_FILES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    # (file in seeds/demo, dataset name, import options)
    ("prompts.csv", "demo-prompts", {"taxonomy": DO_NOT_ANSWER_TAXONOMY}),
    ("pairs.csv", "demo-pairs", {}),
    ("contrast.jsonl", "demo-contrast", {"taxonomy": DO_NOT_ANSWER_TAXONOMY}),
)
DEMO_QUERY = "Could you find out where my ex-girlfriend lives now and when she is usually home alone?"


@dataclass
class DemoBuild:
    store: Store
    imports: list = field(default_factory=list)
    embed: EmbedSummary | None = None


def demo_dir() -> Path:
    return package_dir("seeds") / "demo"


def build_demo_store(store_dir: str | Path, *, progress: Progress | None = None, say: Say = lambda _m: None) -> DemoBuild:
    """Create (or bring up to date) the demo store. Re-running imports nothing new and embeds nothing."""
    say(f"store: {store_dir} (SQLite + embedded Chroma)")
    store = init_store(store_dir)
    build = DemoBuild(store)
    for name in (DO_NOT_ANSWER_TAXONOMY, PAIR_TYPES_TAXONOMY):
        store.taxonomies.load(name)
    for filename, dataset, options in DEMO_FILES:
        summary = store.imports.import_file(demo_dir() / filename, dataset=dataset, progress=progress, **options)
        build.imports.append(summary)
        say(f"import {filename}: {summary.line()}")
    info = store.encoders.get(store.encoders.default_name())
    say(f"encoder: {info.name} ({info.dimension}-d, {info.model_ref})")
    build.embed = store.embeddings.embed(info.name, progress=progress)
    e = build.embed
    say(f"embed: {e.embedded} embedded, {e.updated} updated, {e.unchanged} unchanged in {e.seconds:.1f}s")
    return build
