"""`decode serve MODEL...`: DIGITS's REST API, a JSON API and a web page, with uvicorn.

Imports Starlette and uvicorn (the ``serve`` extra) only when this command runs.
"""

from __future__ import annotations

import socket
from pathlib import Path

import click

from decoder.cli.options import device_option
from decoder.errors import DecoderError

#: Connections + requests in progress before new ones get 503 (each may hold up to --max-upload bytes).
LIMIT_CONCURRENCY = 1000

_SERVE_HINT = "decode serve needs the serve extra: pip install 'caffe-decoder[serve]'"


def _job_ids(values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for value in values:
        stem, sep, job_id = value.partition("=")
        if not sep or not stem.strip() or not job_id.strip():
            raise click.BadParameter(f"{value!r} is not STEM=JOB_ID (e.g. lenet=20160809-163916-d65f)")
        pairs[stem.strip()] = job_id.strip()
    return pairs


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535), help="Port (DIGITS used 5000).")
@click.option(
    "--image-root",
    "image_roots",
    multiple=True,
    type=click.Path(file_okay=False, exists=True),
    help="Folder whose images classify_many / image_path may read (repeatable). None: no server files are read.",
)
@click.option(
    "--allow-image-urls", is_flag=True, help="Let clients send image_url (http/https only, size and time bounded)."
)
@click.option(
    "--max-upload",
    default="20MB",
    show_default=True,
    help="Largest request body; more is refused with 413 before it is read (e.g. 20MB, 500KB).",
)
@click.option(
    "--job-id",
    "job_ids",
    multiple=True,
    metavar="STEM=JOB_ID",
    help="Answer DIGITS clients for model STEM.onnx under this job id (when conversion recorded none).",
)
@click.option("--max-batch", default=64, show_default=True, type=click.IntRange(1, 4096), help="Images per model call.")
@click.option(
    "--max-wait-ms",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0, 1000),
    help="Longest a request waits for concurrent ones to share its model call.",
)
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Model calls run side by side."
)
@device_option
def serve(
    models: tuple[str, ...],
    host: str,
    port: int,
    image_roots: tuple[str, ...],
    allow_image_urls: bool,
    max_upload: str,
    job_ids: tuple[str, ...],
    max_batch: int,
    max_wait_ms: float,
    workers: int,
    device: str,
) -> int:
    """Serve MODEL .onnx files over HTTP: DIGITS's REST API, /v1 JSON API, a web page at /.

    \b
    Each model answers under its file stem and its DIGITS job id:
      curl http://127.0.0.1:5000/models/images/classification/classify_one.json \\
           -XPOST -F job_id=20160809-163916-d65f -F image_file=@digit.png
      curl http://127.0.0.1:5000/v1/models/lenet/predict -F image=@digit.png
    Stop with Ctrl-C or SIGTERM: requests in flight are finished first.
    """
    try:
        import uvicorn

        from decoder.serve import Settings, create_app, load_models
    except ImportError as exc:
        raise DecoderError(f"{_SERVE_HINT} ({exc})") from None

    settings = Settings(
        max_upload=parse_size(max_upload),
        image_roots=tuple(Path(root).resolve() for root in image_roots),
        allow_image_urls=allow_image_urls,
        max_batch=max_batch,
        max_wait=max_wait_ms / 1000,
        workers=workers,
    )
    served = load_models(models, _job_ids(job_ids), providers=device)
    app = create_app(served, settings)
    listener = _listen(host, port)  # bound here, so a busy port is one clear line before anything is announced
    for model in served:
        names = ", ".join(model.ids())
        click.echo(f"decode serve: {model.model.path} as {names} ({len(model.model.labels)} labels)", err=True)
    shown = f"[{host}]" if ":" in host else host
    bound = listener.getsockname()[1]
    click.echo(f"decode serve: web page and API at http://{shown}:{bound}/ (Ctrl-C to stop)", err=True)
    # Past LIMIT_CONCURRENCY open connections and requests, uvicorn answers 503 instead of queueing without end.
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30, limit_concurrency=LIMIT_CONCURRENCY)
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port), or a DecoderError saying why not."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)
    except OSError as exc:
        raise DecoderError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    listener.set_inheritable(True)
    return listener


def parse_size(text: str) -> int:
    """``20MB``, ``500KB``, ``1GB`` or a plain byte count -> bytes (powers of 1024)."""
    units = {"": 1, "B": 1, "KB": 2**10, "K": 2**10, "MB": 2**20, "M": 2**20, "GB": 2**30, "G": 2**30}
    value = text.strip().upper()
    number = value.rstrip("KMGB")
    unit = value[len(number) :]
    try:
        size = int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise click.BadParameter(f"{text!r} is not a size such as 20MB or 500KB", param_hint="--max-upload") from None
    if size < 1:
        raise click.BadParameter("must be at least 1 byte", param_hint="--max-upload")
    return size
