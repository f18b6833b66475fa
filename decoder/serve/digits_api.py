"""DIGITS 5/6's REST API, same paths, fields and JSON shapes (``digits/model/images/classification/views.py``).

- ``POST /models/images/classification/classify_one.json``: ``job_id`` (query string or
  form), ``image_file`` (upload), or ``image_url`` / ``image_path`` (DIGITS 6's field, a
  server path or a URL). Answer ``{"predictions": [[label, percent], ...]}``: the top 5,
  ``round(100 * p, 2)``, indices without a label skipped, as DIGITS does.
- ``POST /models/images/classification/classify_many.json``: ``image_list`` (upload of
  ``path [class]`` lines, DIGITS's rule ``(.*\\S)\\s+(\\d+)$``), optional ``image_folder``
  and ``num_test_images``. Answer ``{"classifications": {path: [[label, percent], ...]}}``;
  images that could not be read are left out, as DIGITS leaves them out, and listed with
  their reason under ``"errors"`` (DIGITS said nothing about them).
- ``GET /index.json`` and ``GET /models/<job_id>.json``.

Server files are read only below ``--image-root`` folders, URLs only with ``--allow-image-urls``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse

import decoder
from decoder.errors import DecoderError
from decoder.serve.errors import ApiError
from decoder.serve.images import RemoteImage, Source, inside_roots, is_url
from decoder.serve.state import ServerState, read_form, upload_of

#: DIGITS's ``read_image_list``: a trailing integer after whitespace is the true class.
LIST_LINE = re.compile(r"(.*\S)\s+(\d+)$")
TOP = 5


def digits_predictions(probabilities: np.ndarray, labels: Sequence[str]) -> list[list[Any]]:
    """DIGITS's ``predictions``: top 5 as ``[label, round(100 * p, 2)]``, skipping classes without a label."""
    order = np.argsort(-probabilities, kind="stable")
    ranked = [(labels[i], round(100.0 * float(probabilities[i]), 2)) for i in order if i < len(labels)]
    if not labels:  # a model converted without labels: name classes by index rather than answer nothing
        ranked = [(str(i), round(100.0 * float(probabilities[i]), 2)) for i in order]
    return [list(entry) for entry in ranked[:TOP]]


def _job_id(request: Request, form: Any) -> str | None:
    """DIGITS's ``job_from_request``: the query string first, then the form."""
    return request.query_params.get("job_id") or (form.get("job_id") if isinstance(form.get("job_id"), str) else None)


def _remote_or_path(state: ServerState, value: str, field: str) -> Source:
    """An ``image_url`` / ``image_path`` / list line: a URL (if allowed) or a file below an image root."""
    settings = state.settings
    if is_url(value):
        if not settings.allow_image_urls:
            raise ApiError(403, f"{field} {value!r}: this server fetches no URLs (start it with --allow-image-urls)")
        if not value.lower().startswith(("http://", "https://")):
            raise ApiError(400, f"{field} {value!r}: only http:// and https:// URLs are fetched")
        return RemoteImage(value, settings.max_upload, settings.url_timeout)
    try:
        return inside_roots(value, settings.image_roots)
    except DecoderError as exc:
        raise ApiError(403, f"{field}: {exc}") from None


async def classify_one(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    form = await read_form(request, state.settings)
    served = state.model(_job_id(request, form))
    source: Source | None = await upload_of(form.get("image_file"), "image_file")
    if source is None:
        for field in ("image_url", "image_path"):
            value = form.get(field)
            if isinstance(value, str) and value.strip():
                source = _remote_or_path(state, value.strip(), field)
                break
    if source is None:
        raise ApiError(400, "must provide image_file (an upload), image_url or image_path")
    (outcome,) = await state.classify(request, served, [source])
    if isinstance(outcome, DecoderError):
        raise ApiError(400, str(outcome))
    return JSONResponse({"predictions": digits_predictions(outcome, served.model.labels)})


async def classify_many(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    form = await read_form(request, state.settings)
    served = state.model(_job_id(request, form))
    upload = await upload_of(form.get("image_list"), "image_list")
    if upload is None:
        raise ApiError(400, "image_list is a required field (an upload of `path [class]` lines)")
    folder = form.get("image_folder")
    folder = folder.strip() if isinstance(folder, str) and folder.strip() else None
    if folder is not None:
        _remote_or_path(state, folder, "image_folder")
        if not os.path.isdir(folder):
            raise ApiError(400, f"image_folder {folder!r} does not exist")
    limit = _count(form.get("num_test_images"))
    paths = _read_list(upload.data, folder, limit)
    if not paths:
        raise ApiError(400, f"{upload.name}: the image list names no images")
    sources = [_remote_or_path(state, path, "image_list") for path in paths]
    outcomes = await state.classify(request, served, sources)
    labels = served.model.labels
    classifications = {
        path: digits_predictions(outcome, labels)
        for path, outcome in zip(paths, outcomes, strict=True)
        if not isinstance(outcome, DecoderError)
    }
    errors = {path: str(o) for path, o in zip(paths, outcomes, strict=True) if isinstance(o, DecoderError)}
    if not classifications:
        raise ApiError(400, f"unable to classify any image from the file ({next(iter(errors.values()))})")
    body: dict[str, Any] = {"classifications": classifications}
    if errors:
        body["errors"] = errors
    return JSONResponse(body)


def _count(value: Any) -> int | None:
    if not isinstance(value, str) or not value.strip():
        return None
    if not value.strip().isdigit():
        raise ApiError(400, f"num_test_images must be a whole number, not {value!r}")
    return int(value)


def _read_list(data: bytes, folder: str | None, limit: int | None) -> list[str]:
    """DIGITS's ``read_image_list``: paths (joined to ``folder`` when relative), classes dropped."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(400, "image_list is not UTF-8 text") from None
    paths = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        match = LIST_LINE.match(line)
        path = match.group(1) if match else line
        if not is_url(path) and folder and not os.path.isabs(path):
            path = os.path.join(folder, path)
        if not is_url(path) and not os.path.isabs(path):
            raise ApiError(400, f"image_list line {line!r}: a relative path needs image_folder")
        paths.append(path)
        if limit is not None and len(paths) >= limit:
            break
    return paths


async def index_json(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    return JSONResponse({"version": decoder.__version__, "datasets": [], "models": [m.summary() for m in state.models]})


async def model_json(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    return JSONResponse(state.model(request.path_params["job_id"]).info())
