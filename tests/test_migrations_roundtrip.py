"""Issue 20 item 1: a downgrade/upgrade round trip through every migration keeps every row.

A store with prompts, pairs, embeddings, metric runs and audit rows is stepped down to each
revision this tstore ships and back up to head; every table that exists at a revision keeps its
row count, on SQLite and PostgreSQL. (On SQLite, batch-mode table rebuilds used to cascade
their DROP TABLE to child rows: `db downgrade 0002` emptied embeddings and metric runs.)
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from taxonomy_store.db import migrate

from conftest import use_hashing_encoder


@pytest.fixture(params=["sqlite", "postgresql"])
def filled_store(request, tmp_path, shared_datasets):
    from taxonomy_store.store import init_store

    db_url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    s = init_store(tmp_path / "store", db_url=db_url)
    use_hashing_encoder(s)
    s.taxonomies.load("xstest-pair-types")
    s.imports.import_file(shared_datasets / "xstest_aug.csv")
    s.embeddings.embed("minilm")
    s.metric_runs.compute("separation", encoder="minilm")
    s.metric_runs.compute("detect", encoder="minilm")
    _a_crosswalk_row(s)
    yield s
    s.close()


def _a_crosswalk_row(s) -> None:
    """One accepted crosswalk row (two taxonomies' nodes), so the round trip covers crosswalk_rows too."""
    from sqlalchemy import select

    from taxonomy_store.db.models import CrosswalkRow, Taxonomy, TaxonomyNode

    s.taxonomies.load("do-not-answer")
    s.taxonomies.load("ailuminate-v1")
    with s.db.write(reason="test crosswalk row") as (session, _audit):
        nodes = {t: session.scalars(select(TaxonomyNode.id).join(Taxonomy, Taxonomy.id == TaxonomyNode.taxonomy_id)
                                 .where(Taxonomy.name == t).order_by(TaxonomyNode.id)).first()
                 for t in ("do-not-answer", "ailuminate-v1")}
        session.add(CrosswalkRow(source_node_id=nodes["ailuminate-v1"], target_node_id=nodes["do-not-answer"], weight=1.0, status="accepted"))


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        tables = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
        return {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in sorted(tables)}


def test_every_migration_round_trips_with_data(filled_store):
    engine = filled_store.engine
    at_head = _counts(engine)
    for table in ("prompts", "pairs", "embeddings", "metric_runs", "metric_values", "audit_log", "encoders", "crosswalk_rows"):
        assert at_head[table] > 0, table
    revisions = migrate.known_revisions()
    for revision in reversed(revisions[:-1]):  # head-1 down to the first revision
        migrate.downgrade(engine, revision)
        assert migrate.current_revision(engine) == revision
        down = _counts(engine)
        kept = {t: n for t, n in at_head.items() if t in down}
        assert down == kept, f"rows lost at downgrade to {revision}"
        migrate.upgrade(engine)
        # a table the lower revision does not have (crosswalk_rows below 0005) comes back empty; every other keeps its rows
        back = _counts(engine)
        assert {t: n for t, n in back.items() if t in down} == kept, f"rows lost on the way back up from {revision}"
        assert all(back[t] == 0 for t in back if t not in down)
        migrate.downgrade(engine, revision)
    migrate.upgrade(engine)
    assert _counts(engine) == {t: (n if t != "crosswalk_rows" else 0) for t, n in at_head.items()}

