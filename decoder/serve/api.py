"""The plain API for new code: predict with `decode --json`'s objects, health, Prometheus metrics.

``POST /v1/models/<id>/predict`` takes one or more images, as multipart file fields (any
field name, in order) or as the raw request body (``Content-Type: image/...``), and answers
``{"model": id, "predictions": [...], "errors": [...]}``; each prediction is exactly the
object `decode IMAGE --json` prints (:meth:`decoder.decoding.Prediction.to_dict`), each
error ``{"image", "position", "error"}`` (position: the image's place in the request; the
predictions keep the order of the others). ``?top_k=N`` changes the length of ``top_k`` (default 5).
When every image failed the answer is a 400 naming the first problem.
"""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse

from decoder.decoding import decode
from decoder.errors import DecoderError
from decoder.serve.errors import ApiError
from decoder.serve.images import Source, Upload
from decoder.serve.state import ServerState, read_form


async def uploads_of(request: Request, state: ServerState) -> list[Source]:
    """Every uploaded file of the request, in order, or the raw body as one image."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await read_form(request, state.settings)
        return [
            Upload(value.filename or key, await value.read())
            for key, value in form.multi_items()
            if isinstance(value, UploadFile)
        ]
    body = await request.body()
    if not body:
        return []
    return [Upload(request.query_params.get("name", "body"), body)]


async def predict(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    served = state.model(request.path_params["model"], "model")
    top_k = _top_k(request.query_params.get("top_k"))
    sources = await uploads_of(request, state)
    if not sources:
        raise ApiError(400, "no image: send files as multipart/form-data, or one image as the request body")
    outcomes = await state.classify(request, served, sources)
    predictions, errors = [], []
    for position, (source, outcome) in enumerate(zip(sources, outcomes, strict=True)):
        assert isinstance(source, Upload)
        if isinstance(outcome, DecoderError):
            errors.append({"image": source.name, "position": position, "error": str(outcome)})
        else:
            (prediction,) = decode(outcome[None], served.model.labels, [source.name], top_k)
            predictions.append(prediction.to_dict())
    if not predictions:
        raise ApiError(400, errors[0]["error"])
    return JSONResponse({"model": served.key, "predictions": predictions, "errors": errors})


def _top_k(value: str | None) -> int:
    if value is None:
        return 5
    if not value.isdigit() or int(value) < 1:
        raise ApiError(400, f"top_k must be a whole number of at least 1, not {value!r}")
    return int(value)


async def list_models(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    return JSONResponse({"models": [m.info() for m in state.models]})


async def healthz(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    return JSONResponse({"status": "ok", "models": [m.key for m in state.models]})


async def metrics(request: Request) -> PlainTextResponse:
    state: ServerState = request.app.state.server
    return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")
