"""`tstore reproduce safe-embed` with the paper's SBERT-all reproduces its published row and writes the report."""

from __future__ import annotations

import json

import pytest

from conftest import run_tstore
from safe_embed_paper import SBERT_ALL_BASELINE, SBERT_ALL_SEPARATION


def test_report_compares_against_the_published_row():
    """The report's "paper" column is the published SBERT-all row, not a drifted copy."""
    from taxonomy_store.workflows import reproduce

    assert reproduce.PAPER_SBERT_ALL_BASELINE == SBERT_ALL_BASELINE
    assert reproduce.PAPER_SBERT_ALL_SEPARATION == SBERT_ALL_SEPARATION
    assert list(reproduce.PAPER_SBERT_ALL_SEPARATION) == list(SBERT_ALL_SEPARATION)  # table order too


@pytest.mark.slow
@pytest.mark.mpnet
@pytest.mark.subprocess
def test_reproduce_safe_embed_sbert_all(tmp_path, shared_datasets, mpnet_assembled):
    store, out = tmp_path / "store", tmp_path / "report"
    args = ("--store", str(store), "reproduce", "safe-embed", "--data", str(shared_datasets), "--encoder", "sbert-all", "--out", str(out))
    first = run_tstore(*args, "--json", timeout=1800)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    (enc,) = summary["encoders"]
    assert enc["encoder"] == "sbert-all" and enc["baseline"] == SBERT_ALL_BASELINE and enc["baseline_source"] == "paper"
    assert enc["embedded"] == 1435  # 497 distinct pair texts + 938 distinct Do-Not-Answer questions
    for pair_type, paper in SBERT_ALL_SEPARATION.items():
        assert round(enc["separation"][pair_type], 3) == paper, pair_type
    assert len(enc["cp"]) == 12 and all(0 <= row["cp"] <= 1 for row in enc["cp"].values())
    assert sum(row["prompts"] for row in enc["cp"].values()) == 938
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cp_per_harm_type.png", "safe-embed-report.json", "safe-embed-report.md", "separation_per_pair_type.png"]
    assert (out / "separation_per_pair_type.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "safe-embed-report.md").read_text(encoding="utf-8")
    assert "| homonyms | 0.394 | 0.394 ✓ |" in markdown
    # Running it again re-encodes nothing and gives the same figures.
    second = run_tstore(*args, "--json", timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout.strip().splitlines()[-1])["encoders"][0]
    assert again["embedded"] == 0
    assert again["separation"] == enc["separation"]
