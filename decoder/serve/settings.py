"""What an operator can tune in `decode serve`, with safe defaults (loopback only, bounded sizes and times)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: Largest request body accepted (Content-Length or bytes actually streamed): DIGITS-sized uploads pass.
DEFAULT_MAX_UPLOAD = 20 * 2**20


@dataclass(frozen=True)
class Settings:
    """Limits and switches of one server; every field has the default `decode serve` uses.

    - ``max_upload``: bytes per request body; more is refused with 413 before it is read whole.
    - ``image_roots``: folders whose files classify_many / ``image_path`` may read (resolved,
      symbolic links followed); empty means the server reads no file the client names.
    - ``allow_image_urls``: fetch ``image_url`` / list lines that are http(s) URLs; each fetch
      is bounded by ``url_timeout`` seconds in total and ``max_upload`` bytes.
    - ``max_batch`` / ``max_wait``: at most this many images per ONNX Runtime call, and the
      longest a request waits (seconds) for others to share its call when the model is idle.
    - ``max_images``: images per request (classify_many lists, multi-image predict).
    - ``workers``: batches run side by side per model (1: on 2 cores the event loop needs the other).
    """

    max_upload: int = DEFAULT_MAX_UPLOAD
    image_roots: tuple[Path, ...] = field(default_factory=tuple)
    allow_image_urls: bool = False
    url_timeout: float = 10.0
    max_batch: int = 64
    max_wait: float = 0.002
    max_images: int = 10_000
    workers: int = 1
