"""`tstore serve`: the HTTP contract, verdicts equal to the guard's, limits, auth, live reloads, logs.

The demo set on SQLite + embedded Chroma with the deterministic hashing encoder (the model's
behaviour is not the point here; tests/test_serve_real.py runs the real one), built and
calibrated once for the module; a real uvicorn server on a loopback port in a thread, called
with httpx. The real model, the `openai` client, PostgreSQL + a Chroma server and several
server processes: tests/test_serve_real.py.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import use_hashing_encoder
from serve_helpers import chunks, demo_texts, serving_app, wait_until

from taxonomy_store.serve.app import create_app
from taxonomy_store.serve.config import ServeConfig, StoreLocation

TIMEOUT = httpx.Timeout(30.0)
# Writes reach the answers within the 5 s on an idle machine (a 0.2-0.5 s poll here); the
# test machines run at load averages near 20, so the tests allow 15 s before calling it lost.
PICKUP_S = 15


def _build(path):
    """The demo set embedded with the hashing encoder, not calibrated (closed)."""
    from taxonomy_store.store import init_store
    from taxonomy_store.workflows.demo import DEMO_FILES, demo_dir

    store = init_store(path)
    for name in ("do-not-answer", "xstest-pair-types"):
        store.taxonomies.load(name)
    for filename, dataset, options in DEMO_FILES:
        store.imports.import_file(demo_dir() / filename, dataset=dataset, **options)
    use_hashing_encoder(store)
    store.embeddings.embed("minilm")
    store.close()


def _writer(template, path, *, calibrate: bool = True):
    """A copy of the template store, opened for writing (hashing encoder in place)."""
    from taxonomy_store.store import Store

    shutil.copytree(template, path)
    store = Store.open(path)
    use_hashing_encoder(store)
    if calibrate:
        store.guard.calibrate("minilm")
    return store


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "template"
    _build(path)
    return path


@pytest.fixture(scope="module")
def built(template, tmp_path_factory):
    """The calibrated demo store (hashing encoder), kept open for in-process comparisons."""
    store = _writer(template, tmp_path_factory.mktemp("serve") / "store")
    yield store
    store.close()


def _reader(path):
    """The server's own read-only view of a store, with the hashing encoder in place."""
    from taxonomy_store.store import Store

    store = Store.open(path, read_only=True)
    use_hashing_encoder(store)
    return store


def _app(path, **config):
    return create_app(ServeConfig(location=StoreLocation(str(path)), **config), _reader(path), close_store=True)


@pytest.fixture(scope="module")
def base(built):
    with serving_app(_app(built.dir, poll_s=0.2)) as url:
        yield url


def _post(base, path, body, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(base + path, json=body, headers=headers, timeout=TIMEOUT)


def _expected(store, texts, **options):
    """What `tstore query --json` prints for these texts, one JSON object each (ids and indexes as the server's)."""
    out = []
    for r in store.guard.query(texts, **options):
        d = json.loads(json.dumps(r.to_dict(), default=str))
        d["index"], d["id"] = 0, None
        out.append(d)
    return out


# -- verdicts: the guard's own, whatever the batching ------------------------------------------
@pytest.mark.slow
def test_query_and_moderations_give_the_guard_verdicts_on_300_texts(built, base):
    texts = demo_texts(300)
    expected = _expected(built, texts)
    assert len({e["verdict"] for e in expected}) == 3, "the texts should draw every verdict"
    parts = chunks(texts, [1, 3, 1, 7, 2, 1, 5])  # concurrent requests of mixed sizes: the batcher mixes them

    def ask(part):
        r = _post(base, "/v1/query", {"input": part})
        assert r.status_code == 200, r.text
        m = _post(base, "/v1/moderations", {"input": part})
        assert m.status_code == 200, m.text
        return r.json()["results"], m.json()["results"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, parts))
    got = [dict(d, index=0) for q, _ in answers for d in q]
    moderated = [m for _, ms in answers for m in ms]
    assert got == expected  # the same JSON as `tstore query --json`, neighbours, votes and scores included
    assert [m["flagged"] for m in moderated] == [e["verdict"] == "unsafe" for e in expected]
    assert [m["tstore"]["verdict"] for m in moderated] == [e["verdict"] for e in expected]
    assert [m["tstore"]["unsafe_score"] for m in moderated] == [e["unsafe_score"] for e in expected]
    batches = httpx.get(base + "/metrics", timeout=TIMEOUT).text
    assert "tstore_batch_requests_count" in batches


def test_query_options_are_the_cli_options(built, base):
    texts = demo_texts(40)[5:25]
    r = _post(base, "/v1/query", {"input": texts, "k": 3, "label": "unsafe", "level": "risk_area", "ids": list(range(20))})
    assert r.status_code == 200, r.text
    expected = _expected(built, texts, k=3, label="unsafe", level="risk_area")
    results = r.json()["results"]
    assert [d["id"] for d in results] == list(range(20)) and [d["index"] for d in results] == list(range(20))
    assert [dict(d, index=0, id=None) for d in results] == expected
    assert all(n["label"] == "unsafe" for d in results for n in d["neighbours"]) and all(len(d["neighbours"]) == 3 for d in results)


def test_moderation_contract(built, base):
    r = _post(base, "/v1/moderations", {"input": "Where does my elderly neighbor keep her spare house key?"})
    assert r.status_code == 200
    body = r.json()
    assert body["id"].startswith("modr-") and body["model"] == "minilm" and len(body["results"]) == 1
    res = body["results"][0]
    harm_types = {"adult_content", "stereotypes_discrimination", "toxic_language", "mental_health_overreliance",
                  "treat_as_human", "private_info", "sensitive_org_info", "disinformation_campaigns", "illegal_activities",
                  "unethical_actions", "false_information", "material_harm_misinfo"}
    assert set(res["categories"]) == set(res["category_scores"]) == set(res["category_applied_input_types"]) == harm_types
    expected = _expected(built, ["Where does my elderly neighbor keep her spare house key?"])[0]
    assert res["tstore"]["verdict"] == expected["verdict"]
    assert res["flagged"] == (expected["verdict"] == "unsafe")
    votes = {v["code"]: v["score"] for v in expected["categories"]}
    assert res["category_scores"] == {c: votes.get(c, 0.0) for c in harm_types}
    lead = max(votes.values(), default=0.0)
    assert res["categories"] == {c: res["flagged"] and votes.get(c, 0.0) >= 0.5 * lead > 0 for c in harm_types}
    assert [c["code"] for c in res["tstore"]["categories"]] == [v["code"] for v in expected["categories"]]
    assert all(c["path"][-1] == c["code"] for c in res["tstore"]["categories"])
    assert body["tstore"]["taxonomy"] == "do-not-answer" and body["tstore"]["level"] == "harm_type"
    # OpenAI's own model names mean the server's encoder
    assert _post(base, "/v1/moderations", {"input": "hi there", "model": "omni-moderation-latest"}).status_code == 200


def test_flag_uncertain_sets_flagged(built):
    texts = demo_texts(300)
    uncertain = [t for t, e in zip(texts, _expected(built, texts)) if e["verdict"] == "uncertain"][:5]
    assert uncertain
    with serving_app(_app(built.dir, flag_uncertain=True)) as url:
        results = _post(url, "/v1/moderations", {"input": uncertain}).json()["results"]
    assert [r["flagged"] for r in results] == [True] * len(uncertain)


# -- bad input, limits, auth ---------------------------------------------------------------------
BAD_INPUTS = [
    # (case, body (str: raw bytes), status, param, code)
    ("malformed JSON", '{"input": ', 400, None, "invalid_json"),
    ("not an object", '["a"]', 422, None, "invalid_value"),
    ("input missing", {}, 422, "input", "invalid_value"),
    ("input a number", {"input": 5}, 422, "input", "invalid_value"),
    ("a number in the list", {"input": ["fine", 3]}, 422, "input[1]", "invalid_value"),
    ("input null", {"input": None}, 422, "input", "invalid_value"),
    ("empty list", {"input": []}, 422, "input", "empty_input"),
    ("empty text", {"input": ""}, 422, "input", "empty_input"),
    ("blank text in a list", {"input": ["fine", "   "]}, 422, "input[1]", "empty_input"),
    ("text over the limit", {"input": "x" * 201}, 413, "input", "text_too_long"),
    ("list text over the limit", {"input": ["ok", "y" * 201]}, 413, "input[1]", "text_too_long"),
    ("batch over the limit", {"input": ["t"] * 9}, 413, "input", "batch_too_large"),
    ("model not served", {"input": "hi", "model": "sbert-all"}, 422, "model", "model_not_found"),
    ("model a number", {"input": "hi", "model": 7}, 422, "model", "invalid_value"),
]
QUERY_BAD = [
    ("unknown option", {"input": "hi", "lable": "safe"}, 422, "lable", "invalid_value"),
    ("k zero", {"input": "hi", "k": 0}, 422, "k", "invalid_value"),
    ("k a string", {"input": "hi", "k": "ten"}, 422, "k", "invalid_value"),
    ("unknown label", {"input": "hi", "label": "maybe"}, 422, "label", "invalid_value"),
    ("unknown taxonomy", {"input": "hi", "taxonomy": "nope"}, 422, "taxonomy", "invalid_value"),
    ("unknown level", {"input": "hi", "level": "nope"}, 422, "level", "invalid_value"),
    ("ids of another length", {"input": ["a", "b"], "ids": [1]}, 422, "ids", "invalid_value"),
]


@pytest.fixture(scope="module")
def strict(built):
    """A server with small limits and a token."""
    with serving_app(_app(built.dir, token="s3cret-token", max_text_chars=200, max_batch=8)) as url:
        yield url


def _send(url, path, body, token="s3cret-token"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if isinstance(body, str):
        return httpx.post(url + path, content=body.encode(), headers={**headers, "Content-Type": "application/json"}, timeout=TIMEOUT)
    return httpx.post(url + path, json=body, headers=headers, timeout=TIMEOUT)


@pytest.mark.parametrize("case,body,status,param,code", BAD_INPUTS + [("/v1/query " + c[0], *c[1:]) for c in QUERY_BAD],
                         ids=[c[0] for c in BAD_INPUTS] + ["query " + c[0] for c in QUERY_BAD])
def test_bad_input_is_a_json_error_naming_the_field(strict, case, body, status, param, code):
    path = "/v1/query" if case.startswith("/v1/query") else "/v1/moderations"
    r = _send(strict, path, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert (err["param"], err["code"]) == (param, code)
    assert err["message"] and "Traceback" not in r.text
    if param:
        assert err["message"].startswith(param) or param in err["message"]


def test_a_missing_or_wrong_token_is_401_and_probes_stay_open(strict):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}, {"Authorization": "Basic s3cret-token"}):
        r = httpx.post(strict + "/v1/moderations", json={"input": "hi"}, headers=headers, timeout=TIMEOUT)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(strict + "/v1/info", headers=headers, timeout=TIMEOUT).status_code == 401
    assert _send(strict, "/v1/moderations", {"input": "hi"}).status_code == 200
    assert httpx.get(strict + "/healthz", timeout=TIMEOUT).json() == {"status": "alive"}
    assert httpx.get(strict + "/readyz", timeout=TIMEOUT).status_code == 200
    assert httpx.get(strict + "/metrics", timeout=TIMEOUT).status_code == 200
    assert httpx.get(strict + "/openapi.json", timeout=TIMEOUT).json()["paths"].keys() >= {"/v1/moderations", "/v1/query"}


def test_unknown_paths_and_methods_are_json(strict):
    r = httpx.get(strict + "/nothing", timeout=TIMEOUT)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(strict + "/v1/moderations", timeout=TIMEOUT)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_an_unexpected_failure_is_a_500_without_traceback(built, monkeypatch):
    from taxonomy_store.serve import snapshot

    def boom(self, texts, vectors, **params):
        raise RuntimeError("secret internals /path/to/file.py line 12")

    with serving_app(_app(built.dir)) as url:
        monkeypatch.setattr(snapshot.Snapshot, "answer", boom)
        r = _post(url, "/v1/moderations", {"input": "hi"})
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["code"] == "internal_error" and r.headers["x-request-id"] in err["message"]
    assert "secret" not in r.text and "Traceback" not in r.text


def test_non_loopback_host_without_token_is_refused(built, capsys, monkeypatch):
    from taxonomy_store.cli import cli
    from taxonomy_store.cli.app import run

    monkeypatch.delenv("TSTORE_SERVE_TOKEN", raising=False)
    assert run(cli, ["--store", str(built.dir), "serve", "--host", "0.0.0.0"]) != 0
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 listens beyond this machine and no token is set" in err
    assert "--token" in err and "127.0.0.1" in err


# -- logs: ids, lengths, verdicts, timings; never the text --------------------------------------
def test_logs_name_lengths_and_verdicts_never_the_text(built, base, caplog):
    secret = "my very private prompt about the neighbour's spare key zebra-7734"
    with caplog.at_level(logging.INFO, logger="tstore.serve"):
        r = _post(base, "/v1/moderations", {"input": [secret, "hello"]})
        wait_until(lambda: any("/v1/moderations 200" in m for m in caplog.messages), timeout=10, what="the log line")
    assert r.status_code == 200
    line = next(m for m in caplog.messages if r.headers["x-request-id"] in m)
    assert f"texts=2 chars=[{len(secret)},5]" in line and "verdicts=" in line and "ms" in line
    assert "zebra-7734" not in caplog.text and "private" not in caplog.text


# -- probes, info, metrics -----------------------------------------------------------------------
def test_info_and_metrics(built, base):
    info = httpx.get(base + "/v1/info", timeout=TIMEOUT).json()
    snap = info["snapshot"]
    assert info["ready"] is True and snap["encoder"] == "minilm" and snap["prompts"] == 620
    assert snap["data_revision"] == built.data_revision()
    assert snap["calibration"]["data_revision"] == built.guard.calibration("minilm").data_revision
    assert snap["calibration"]["stale"] is False and len(snap["categories"]) == 12
    _post(base, "/v1/moderations", {"input": ["a", "b"]})
    text = httpx.get(base + "/metrics", timeout=TIMEOUT).text
    for name in ('tstore_requests_total{endpoint="/v1/moderations",status="200"}', "tstore_request_seconds_bucket",
                 "tstore_verdicts_total", "tstore_batch_texts_bucket", "tstore_reloads_total", "tstore_data_revision"):
        assert name in text, name


# -- live data: other processes' writes are picked up, requests never fail -------------------------
@pytest.mark.slow
def test_readyz_waits_for_a_calibration_and_edits_arrive_within_5s(tmp_path, template):
    path = tmp_path / "store"
    writer = _writer(template, path, calibrate=False)
    try:
        with serving_app(_app(path, poll_s=0.5)) as url:
            r = httpx.get(url + "/readyz", timeout=TIMEOUT)
            assert r.status_code == 503 and "not calibrated" in r.json()["reason"]
            assert _post(url, "/v1/moderations", {"input": "hi"}).json()["results"][0]["tstore"]["verdict"] == "uncertain"
            writer.guard.calibrate("minilm")
            wait_until(lambda: httpx.get(url + "/readyz", timeout=TIMEOUT).status_code == 200, timeout=PICKUP_S, what="ready")
            # an import, then its embed: the new prompt answers as its own nearest neighbour
            new = tmp_path / "new.csv"
            new.write_text("text,label\nA wholly new sentence about quantum teapots in orbit,unsafe\n", encoding="utf-8")
            writer.imports.import_file(new, dataset="new")
            wait_until(lambda: "without a current vector" not in httpx.get(url + "/readyz").text
                       and httpx.get(url + "/readyz").status_code == 503, timeout=PICKUP_S, what="stale after the import")
            writer.embeddings.embed("minilm")
            q = {"input": "A wholly new sentence about quantum teapots in orbit", "k": 1}
            wait_until(lambda: _post(url, "/v1/query", q).json()["results"][0]["neighbours"][0]["similarity"] > 0.999,
                       timeout=PICKUP_S, what="the new prompt to be served")
            metrics = httpx.get(url + "/metrics", timeout=TIMEOUT).text
            assert _metric(metrics, "tstore_reloads_total") >= 2
    finally:
        writer.close()


def _metric(text: str, name: str) -> float:
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


@pytest.mark.slow
def test_an_embed_beside_the_server_never_fails_a_request(tmp_path, template):
    path = tmp_path / "store"
    writer = _writer(template, path)
    rows = "\n".join(f"Brand new prompt number {i} about harmless gardening tips,safe" for i in range(150))
    (tmp_path / "more.csv").write_text("text,label\n" + rows + "\n", encoding="utf-8")
    statuses: list[int] = []
    stop = threading.Event()
    try:
        with serving_app(_app(path, poll_s=0.2)) as url:
            def hammer():
                texts = demo_texts(60)
                i = 0
                while not stop.is_set():
                    statuses.append(_post(url, "/v1/moderations", {"input": texts[i % 60: i % 60 + 3]}).status_code)
                    i += 3

            threads = [threading.Thread(target=hammer) for _ in range(4)]
            for t in threads:
                t.start()
            writer.imports.import_file(tmp_path / "more.csv", dataset="more")
            writer.embeddings.embed("minilm", batch_size=16)
            writer.guard.calibrate("minilm")
            wait_until(lambda: httpx.get(url + "/readyz", timeout=TIMEOUT).status_code == 200, timeout=PICKUP_S, what="ready")
            stop.set()
            for t in threads:
                t.join(timeout=30)
            info = httpx.get(url + "/v1/info", timeout=TIMEOUT).json()["snapshot"]
    finally:
        stop.set()
        writer.close()
    assert statuses and set(statuses) == {200}
    assert info["prompts"] == 770 and info["data_revision"] == writer.data_revision()
