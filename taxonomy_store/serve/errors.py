"""One JSON shape for every error the server answers (OpenAI's): {"error": {message, type, param, code}}.

Bad input is 400 (unreadable JSON) or 422 (wrong types, empty input, a bad option), texts or
batches over the limits 413, a missing or wrong token 401, a server still loading 503. Anything
unexpected is a 500 whose body names the request id and nothing else: the traceback goes to the
server's log, never to the client.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from taxonomy_store.errors import TStoreError
from taxonomy_store.serve.batcher import NotReady, Overloaded

log = logging.getLogger("tstore.serve")

# pydantic names a union's branch in the error location (`input.list[str].3`): not a field
_BRANCHES = ("str", "list[str]", "int", "list[union[str,int]]")


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str, param: str | None = None, type: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")
        self.headers = headers


def error_body(message: str, *, type: str, code: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.message, type=exc.type, code=exc.code, param=exc.param), status_code=exc.status,
                        headers=exc.headers)


def field_name(loc: tuple) -> str | None:
    """`("body", "input", "list[str]", 3)` -> `input[3]`."""
    parts = [p for p in loc if p != "body" and not (isinstance(p, str) and (p in _BRANCHES or "[" in p or "-" in p))]
    name = ""
    for p in parts:
        name += f"[{p}]" if isinstance(p, int) else (f".{p}" if name else str(p))
    return name or None


def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": "invalid"}
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx")
        why = ctx.get("error") if isinstance(ctx, dict) else None
        return JSONResponse(error_body("the body is not valid JSON" + (f": {why}" if why else ""),
                                       type="invalid_request_error", code="invalid_json"), status_code=400)
    # the deepest field named is the one at fault (`input[1]` rather than `input` for ["a", 3])
    param = max((field_name(tuple(e.get("loc", ()))) or "" for e in errors), key=len) or None
    mine = [e for e in errors if field_name(tuple(e.get("loc", ()))) == param] or errors
    if mine[0].get("type") == "missing":
        message = f"{param} is required"
    else:
        messages = sorted({e.get("msg", "") for e in mine})
        message = f"{param}: " + "; or ".join(messages) if param else "; ".join(messages)
    return JSONResponse(error_body(message, type="invalid_request_error", code="invalid_value", param=param), status_code=422)


def _domain(request: Request, exc: TStoreError) -> JSONResponse:
    if isinstance(exc, (NotReady, Overloaded)):
        return JSONResponse(error_body(str(exc), type="server_error", code="not_ready" if isinstance(exc, NotReady) else "overloaded"),
                            status_code=503, headers={"Retry-After": "2"})
    return JSONResponse(error_body(str(exc), type="invalid_request_error", code="invalid_value"), status_code=422)


def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed"}
    return JSONResponse(error_body(str(exc.detail), type="invalid_request_error", code=codes.get(exc.status_code, "http_error")),
                        status_code=exc.status_code, headers=getattr(exc, "headers", None))


def internal_error(request_id: str) -> JSONResponse:
    return JSONResponse(error_body(f"internal error (request {request_id}); the server's log has the details",
                                   type="server_error", code="internal_error"), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, lambda request, exc: error_response(exc))
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(TStoreError, _domain)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]


def finite(obj: Any) -> Any:
    """The object with NaN and infinities as null: strict JSON, which Python's json would not write."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj
