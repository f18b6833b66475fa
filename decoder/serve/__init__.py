"""`decode serve`: DIGITS's REST API, a plain JSON API and a web page, from converted .onnx models.

A subpackage on top of the core (nothing in the core imports it), needing the ``serve``
extra (Starlette, uvicorn, python-multipart)::

    from decoder.serve import Settings, create_app, load_models

    app = create_app(load_models(["lenet.onnx"]), Settings(image_roots=(Path("/data"),)))
    # uvicorn.run(app, host="127.0.0.1", port=5000), or Starlette's TestClient(app)

See docs/serving.md for the endpoints, limits and measured throughput.
"""

from __future__ import annotations

from decoder.serve.app import create_app
from decoder.serve.registry import ServedModel, load_models
from decoder.serve.settings import Settings

__all__ = ["ServedModel", "Settings", "create_app", "load_models"]
