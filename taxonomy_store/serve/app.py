"""`create_app`: the FastAPI application of `tstore serve`.

The app opens the store read-only (or takes an open one: tests install a stand-in encoder),
keeps one snapshot of it in service (`snapshot.py`), and answers through the batcher
(`batcher.py`). Routes only parse, check limits and shape answers; the verdicts are the guard's.

Logging: one line per request with its id, endpoint, status, milliseconds, the number of texts,
their lengths and the verdicts; never the texts themselves.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from starlette.responses import JSONResponse, Response

from taxonomy_store import __version__
from taxonomy_store.serve import errors
from taxonomy_store.serve.batcher import Batcher, NotReady, QueryOptions
from taxonomy_store.serve.config import ServeConfig
from taxonomy_store.serve.errors import ApiError
from taxonomy_store.serve.metrics import ServeMetrics
from taxonomy_store.serve.moderation import is_openai_model_name, moderation_result
from taxonomy_store.serve.schemas import ErrorResponse, ModerationRequest, ModerationResponse, QueryRequest, QueryResponse
from taxonomy_store.serve.snapshot import SnapshotKeeper
from taxonomy_store.vocabulary import DEFAULT_TAXONOMY

log = logging.getLogger("tstore.serve")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_QUIET = ("/healthz", "/readyz", "/metrics")  # probes and scrapes: logged at debug level only
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse, "description": d}
    for s, d in ((400, "Unreadable JSON"), (401, "Missing or wrong token"), (413, "A text or the batch over the limit"),
                 (422, "Wrong types, empty input, a bad option"), (503, "Not ready yet"))
}


class JSONBody(JSONResponse):
    """Strict JSON (NaN and infinities as null), UTF-8 as it is."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, allow_nan=False, default=str, separators=(",", ":")).encode()
        except ValueError:
            return json.dumps(errors.finite(content), ensure_ascii=False, default=str, separators=(",", ":")).encode()


class Server:
    """What the routes share: the config, the store, the snapshot keeper, the batcher, the metrics."""

    def __init__(self, config: ServeConfig, store=None, *, close_store: bool | None = None):
        self.config = config
        self.metrics = ServeMetrics()
        self.store = store
        self._owns_store = store is None if close_store is None else close_store
        self.keeper: SnapshotKeeper | None = None
        self.batcher: Batcher | None = None
        self.started_at = time.time()
        self._first = True

    def start(self) -> None:
        limit_threads(self.config.threads)
        if self.store is None:
            self.store = open_read_only(self.config)
        self.keeper = SnapshotKeeper(self.store, self.config.encoder, poll_s=self.config.poll_s,
                                     on_reload=self._taken_into_service, on_failure=lambda m: self.metrics.reload_failures.inc(),
                                     encode_batch=self.config.encode_batch)
        self.batcher = Batcher(self.keeper, self.metrics, max_texts=self.config.batch_texts, wait_ms=self.config.batch_wait_ms)
        self.keeper.start()
        self.batcher.start()

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()
        if self.keeper is not None:
            self.keeper.stop()
        if self._owns_store and self.store is not None:
            self.store.close()

    def _taken_into_service(self, snap) -> None:
        if not self._first:
            self.metrics.reloads.inc()
        self._first = False
        self.metrics.data_revision.set(snap.data_revision)
        self.metrics.prompts.set(len(snap.pool))

    def submit(self, texts: list[str], options: QueryOptions, ids=None):
        if self.batcher is None:
            raise NotReady("the server is starting", "retry in a few seconds")
        return self.batcher.submit(texts, options, ids)

    def snapshot(self):
        return self.keeper.current if self.keeper is not None else None

    def check_model(self, model: str | None) -> None:
        served = self.keeper.encoder_name if self.keeper is not None else None
        if model is None or served is None or model == served or is_openai_model_name(model):
            return
        raise ApiError(422, f"model {model!r} is not served here; this server answers with encoder {served!r}",
                       code="model_not_found", param="model")

    def checked_texts(self, value: str | list[str]) -> list[str]:
        """The request's texts, or the error naming the one at fault (413 over a limit, 422 empty)."""
        single = isinstance(value, str)
        texts: list[str] = [value] if isinstance(value, str) else list(value)
        cfg = self.config
        if not texts:
            raise ApiError(422, "input is an empty list: give at least one text", code="empty_input", param="input")
        if len(texts) > cfg.max_batch:
            raise ApiError(413, f"input holds {len(texts)} texts; the limit is {cfg.max_batch} per request "
                           "(split the batch, or start the server with a larger --max-batch)", code="batch_too_large", param="input")
        for i, text in enumerate(texts):
            where = "input" if single else f"input[{i}]"
            if len(text) > cfg.max_text_chars:
                raise ApiError(413, f"{where} has {len(text):,} characters; the limit is {cfg.max_text_chars:,} "
                               "(or start the server with a larger --max-text-chars)", code="text_too_long", param=where)
            if not text.strip():
                raise ApiError(422, f"{where} is empty: give some text", code="empty_input", param=where)
        return texts

    def check_options(self, options: QueryOptions) -> None:
        """The taxonomy and level named exist (the guard checks too; here the error names the field)."""
        snap = self.snapshot()
        if snap is None:
            return
        known = snap.pool.taxonomies
        if options.taxonomy is not None and options.taxonomy not in known:
            raise ApiError(422, f"no taxonomy {options.taxonomy!r} in this store (loaded: {', '.join(sorted(known)) or 'none'})",
                           code="invalid_value", param="taxonomy")
        levels = known.get(options.taxonomy or DEFAULT_TAXONOMY)
        if options.level is not None and levels is not None and options.level not in levels:
            raise ApiError(422, f"taxonomy {options.taxonomy or DEFAULT_TAXONOMY!r} has no level {options.level!r} "
                           f"(levels: {', '.join(levels)})", code="invalid_value", param="level")


def open_read_only(config: ServeConfig):
    from taxonomy_store.store import Store

    loc = config.location
    return Store.open(loc.store, db_url=loc.db_url, chroma_url=loc.chroma_url, chroma_token=loc.chroma_token, read_only=True)


def limit_threads(threads: int | None) -> None:
    """torch's and the BLAS libraries' threads (process-wide), when the operator says how many."""
    if threads is None:
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


def create_app(config: ServeConfig, store=None, *, close_store: bool | None = None) -> FastAPI:
    """The app. `store`: an open store to serve (left open unless `close_store`); None: open
    `config.location` read-only when the app starts, and close it when it stops."""
    server = Server(config, store, close_store=close_store)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.start()
        try:
            yield
        finally:
            server.stop()

    app = FastAPI(title="tstore", version=__version__, lifespan=lifespan,
                  description="The tstore guard as a service: OpenAI-compatible moderation and `tstore query` over HTTP.")
    app.state.server = server
    errors.install(app)
    _observe(app, server)
    _probe_routes(app, server)
    _guard_routes(app, server)
    return app


def _auth(server: Server):
    token = server.config.token
    expected = token.encode() if token else None

    def require_token(request: Request) -> None:
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise ApiError(401, "a valid `Authorization: Bearer TOKEN` header is required", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    return Depends(require_token)


def _observe(app: FastAPI, server: Server) -> None:
    cfg = server.config
    max_body = cfg.max_batch * (cfg.max_text_chars * 6 + 16) + 65536  # JSON may escape a character as \\uXXXX

    @app.middleware("http")
    async def observe(request: Request, call_next):
        given = request.headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        request.state.rid = rid
        t0 = time.perf_counter()
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_body:
            response: Response = errors.error_response(ApiError(413, f"the body has {int(length):,} bytes; the limit is {max_body:,}",
                                                                code="body_too_large"))
        else:
            try:
                response = await call_next(request)
            except Exception:  # noqa: BLE001 - never a traceback to the client
                log.exception("request %s failed", rid)
                response = errors.internal_error(rid)
        seconds = time.perf_counter() - t0
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        server.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        server.metrics.latency.labels(endpoint).observe(seconds)
        note = getattr(request.state, "note", "")
        log.log(logging.DEBUG if endpoint in _QUIET else logging.INFO, "request %s %s %s %d %.1fms%s",
                rid, request.method, endpoint, response.status_code, seconds * 1000, note)
        response.headers["x-request-id"] = rid
        return response


def _probe_routes(app: FastAPI, server: Server) -> None:
    @app.get("/healthz", tags=["probes"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["probes"], summary="Encoder loaded, vectors in memory, calibration present and current",
             responses={503: {"description": "Not ready, with the reason"}})
    async def readyz() -> Response:
        snap = server.snapshot()
        if snap is None:
            reason = server.keeper.last_error if server.keeper is not None else "starting"
            return JSONBody({"ready": False, "reason": reason}, status_code=503)
        stale = snap.stale_reason()
        body = {"ready": stale is None, "encoder": snap.encoder_name, "data_revision": snap.data_revision,
                "prompts": len(snap.pool), "reason": stale}
        return JSONBody(body, status_code=200 if stale is None else 503)

    @app.get("/metrics", tags=["probes"], summary="Prometheus metrics of this process")
    async def metrics() -> Response:
        return Response(server.metrics.render(), media_type=server.metrics.content_type)

    @app.get("/v1/info", tags=["guard"], summary="Encoder, data and calibration revisions, counts, limits",
             dependencies=[_auth(server)], responses=ERRORS)
    async def info() -> Response:
        snap = server.snapshot()
        cfg = server.config
        body = {
            "version": __version__,
            "ready": snap is not None and snap.stale_reason() is None,
            "reason": snap.stale_reason() if snap is not None else server.keeper.last_error if server.keeper else "starting",
            "snapshot": snap.info() if snap is not None else None,
            "limits": {"max_text_chars": cfg.max_text_chars, "max_batch": cfg.max_batch},
            "batching": {"max_texts": cfg.batch_texts, "wait_ms": cfg.batch_wait_ms,
                         "encode_batch": snap.encode_batch if snap is not None else cfg.encode_batch},
            "flag_uncertain": cfg.flag_uncertain,
            "started_at": server.started_at,
        }
        return JSONBody(body)


def _note(request: Request, texts: list[str], results) -> None:
    """What the log line of this request says about it: counts, lengths, verdicts; never the text."""
    verdicts: dict[str, int] = {}
    for r in results:
        verdicts[r.verdict] = verdicts.get(r.verdict, 0) + 1
    lengths = ",".join(str(len(t)) for t in texts[:8]) + (",..." if len(texts) > 8 else "")
    request.state.note = f" texts={len(texts)} chars=[{lengths}] verdicts=" + ",".join(f"{k}:{v}" for k, v in sorted(verdicts.items()))


def _guard_routes(app: FastAPI, server: Server) -> None:
    auth = _auth(server)

    @app.post("/v1/moderations", tags=["guard"], response_model=ModerationResponse, responses=ERRORS, dependencies=[auth],
              summary="OpenAI-compatible moderation: flagged, categories and scores of the store's taxonomy")
    async def moderations(body: ModerationRequest, request: Request) -> Response:
        texts = server.checked_texts(body.input)
        server.check_model(body.model)
        answer = await server.submit(texts, QueryOptions())
        server.metrics.texts.inc(len(texts))
        for r in answer.results:
            server.metrics.verdicts.labels(r.verdict).inc()
        _note(request, texts, answer.results)
        snap = answer.snapshot
        cal = snap.calibration
        return JSONBody({
            "id": f"modr-{request.state.rid}",
            "model": snap.encoder_name,
            "results": [moderation_result(r, snap.categories, flag_uncertain=server.config.flag_uncertain) for r in answer.results],
            "tstore": {"data_revision": snap.data_revision, "calibration_revision": cal.data_revision if cal else None,
                       "taxonomy": snap.taxonomy, "level": snap.level},
        })

    @app.post("/v1/query", tags=["guard"], response_model=QueryResponse, responses=ERRORS, dependencies=[auth],
              summary="The JSON of `tstore query --json`, for one text or a batch")
    async def query(body: QueryRequest, request: Request) -> Response:
        texts = server.checked_texts(body.input)
        server.check_model(body.model)
        if body.ids is not None and len(body.ids) != len(texts):
            raise ApiError(422, f"ids holds {len(body.ids)} ids for {len(texts)} texts", code="invalid_value", param="ids")
        options = QueryOptions(k=body.k, level=body.level, taxonomy=body.taxonomy, dataset=_names(body.dataset),
                               label=_names(body.label), category=_names(body.category))
        server.check_options(options)
        answer = await server.submit(texts, options, ids=body.ids)
        server.metrics.texts.inc(len(texts))
        for r in answer.results:
            server.metrics.verdicts.labels(r.verdict).inc()
        _note(request, texts, answer.results)
        return JSONBody({"model": answer.snapshot.encoder_name, "data_revision": answer.snapshot.data_revision,
                         "results": [r.to_dict() for r in answer.results]})


def _names(value) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def app_from_env() -> FastAPI:
    """The factory each uvicorn worker calls (`tstore serve --workers N`): the config comes in $TSTORE_SERVE_CONFIG."""
    from taxonomy_store.serve.logs import configure

    config = ServeConfig.from_env()
    configure()
    return create_app(config)
