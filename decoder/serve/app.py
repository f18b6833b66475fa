"""The ASGI application: :func:`create_app` builds a plain Starlette object from loaded models and settings.

Tests call it in-process through Starlette's ``TestClient``; `decode serve` hands it to
uvicorn. Shutdown (after uvicorn has let the requests in flight finish, its graceful
shutdown on SIGTERM) stops the batchers and removes the server's private temporary folder.
No global state is changed: several apps can live in one process.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from decoder.errors import DecoderError
from decoder.serve import api, digits_api, page
from decoder.serve.errors import ApiError, error_response
from decoder.serve.limits import RequestGuard, UploadTooLarge
from decoder.serve.registry import ServedModel, check_unique
from decoder.serve.settings import Settings
from decoder.serve.state import ServerState

log = logging.getLogger("decoder.serve")

CLASSIFICATION = "/models/images/classification"

#: (method, path prefix or exact path) -> endpoint label in /metrics.
_ENDPOINTS = (
    ("POST", f"{CLASSIFICATION}/classify_one", "classify_one"),
    ("POST", f"{CLASSIFICATION}/classify_many", "classify_many"),
    ("GET", "/index.json", "index"),
    ("GET", "/models/", "model_info"),
    ("POST", "/v1/models/", "predict"),
    ("GET", "/v1/models", "models"),
    ("GET", "/healthz", "healthz"),
    ("GET", "/metrics", "metrics"),
    ("GET", "/static/", "static"),
)


def endpoint_of(method: str, path: str) -> str:
    """A bounded set of labels for /metrics (never the raw path: clients choose those)."""
    if path == "/":
        return "page"
    for wanted, prefix, name in _ENDPOINTS:
        if method == wanted and path.startswith(prefix):
            return "visualize" if name == "predict" and path.endswith("/visualize") else name
    return "other"


def create_app(models: Sequence[ServedModel], settings: Settings | None = None) -> Starlette:
    """The server for ``models`` (see :func:`decoder.serve.registry.load_models`) with ``settings``."""
    models = list(models)
    if not models:
        raise DecoderError("no model to serve")
    check_unique(models)
    state = ServerState(models, settings or Settings())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await state.close()

    routes = [
        Route("/", page.index_page, methods=["GET"]),
        Mount("/static", StaticFiles(directory=page.STATIC), name="static"),
        Route(f"{CLASSIFICATION}/classify_one.json", digits_api.classify_one, methods=["POST"]),
        Route(f"{CLASSIFICATION}/classify_many.json", digits_api.classify_many, methods=["POST"]),
        Route("/index.json", digits_api.index_json, methods=["GET"]),
        Route("/models/{job_id}.json", digits_api.model_json, methods=["GET"]),
        Route("/v1/models", api.list_models, methods=["GET"]),
        Route("/v1/models/{model}/predict", api.predict, methods=["POST"]),
        Route("/v1/models/{model}/visualize", page.visualize, methods=["POST"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
    ]
    handlers = {
        ApiError: _api_error,
        DecoderError: _decoder_error,
        HTTPException: _http_error,
        UploadTooLarge: _too_large,
        Exception: _internal_error,
    }
    guard = Middleware(
        RequestGuard,
        max_upload=state.settings.max_upload,
        metrics=state.metrics,
        arrivals=state.arrivals,
        endpoint_of=endpoint_of,
    )
    app = Starlette(routes=routes, middleware=[guard], exception_handlers=handlers, lifespan=lifespan)  # type: ignore[arg-type]
    app.state.server = state
    return app


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message)


async def _decoder_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(400, str(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    messages = {404: f"no such page: {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
    detail = messages.get(exc.status_code) or str(exc.detail)
    return error_response(exc.status_code, detail)


async def _too_large(request: Request, exc: Exception) -> JSONResponse:
    response = error_response(413, str(exc))
    response.headers["connection"] = "close"
    return response


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return error_response(500, f"internal error ({type(exc).__name__}); the server keeps running")
