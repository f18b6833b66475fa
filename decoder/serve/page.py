"""The web page at ``/`` (static HTML + JS shipped in the package) and the pictures it shows.

``POST /v1/models/<id>/visualize`` draws one image's pass through the network with
`decode visualize`'s own code (:func:`decoder.visualization.write_report`) into the
server's private temporary folder, answers the pictures inline (``data:`` URLs) with the
prediction, and removes them. Drawing needs matplotlib (the ``viz`` extra): without it the
answer is a 501 saying so, and the page still shows the top-5 from the predict call.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import tempfile
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse

from decoder.errors import DecoderError
from decoder.serve.api import uploads_of
from decoder.serve.errors import ApiError
from decoder.serve.images import Upload, pixels_of
from decoder.serve.registry import ServedModel
from decoder.serve.state import ServerState, arrived

STATIC = Path(__file__).parent / "static"
VIZ_HINT = "the pictures need matplotlib: pip install 'caffe-decoder[viz]'"


async def index_page(request: Request) -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


async def visualize(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    served = state.model(request.path_params["model"], "model")
    sources = await uploads_of(request, state)
    arrived(request)  # it will not join a batch: the batchers must not wait for it
    if len(sources) != 1:
        raise ApiError(400, f"visualize takes exactly one image, not {len(sources)}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ApiError(501, VIZ_HINT) from None
    upload = sources[0]
    assert isinstance(upload, Upload) and state.temp is not None
    loop = asyncio.get_running_loop()
    body = await loop.run_in_executor(state.pictures, _draw, served, upload, state.temp)
    return JSONResponse(body)


def _draw(served: ServedModel, upload: Upload, temp: Path) -> dict[str, Any]:
    """In a worker thread: `decode visualize` into a scratch folder, pictures back as data URLs."""
    from decoder.visualization import write_report

    spec = served.model.spec
    assert spec is not None
    try:
        pixels = pixels_of(upload, spec.channels)
    except DecoderError as exc:
        raise ApiError(400, str(exc)) from None
    folder = Path(tempfile.mkdtemp(prefix="visualize-", dir=temp))
    try:
        report = write_report(served.visualizer(), pixels, folder)  # type: ignore[arg-type]
        pictures = [_picture("input", "the input as the network sees it", folder / report.input_picture)]
        for bank, path in zip(report.filter_banks, report.filters, strict=True):
            shape = "x".join(str(d) for d in bank.weights.shape)
            pictures.append(_picture("filters", f"{bank.layer} filters ({shape})", folder / path))
        for stat, path in zip(report.stats, report.activations, strict=True):
            if path is not None:
                title = f"{stat.layer} ({stat.type}) activations, shape {list(stat.shape)}"
                pictures.append(_picture("activations", title, folder / path))
        prediction = report.forward.prediction
        return {
            "model": served.key,
            "image": upload.name,
            "prediction": None if prediction is None else {**prediction.to_dict(), "image": upload.name},
            "pictures": pictures,
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _picture(kind: str, title: str, path: Path) -> dict[str, str]:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"kind": kind, "title": title, "src": f"data:image/png;base64,{data}"}
