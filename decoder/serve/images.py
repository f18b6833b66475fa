"""Where a served image comes from: uploaded bytes, a file below an allowed root, or an http(s) URL.

Uploaded bytes are decoded in memory (never written anywhere): plain 8-bit PNGs by the
batch pipeline's fast path (:mod:`decoder.fast_png`, Pillow's exact pixels), everything else
by Pillow with DIGITS's mode rules (:func:`decoder.preprocess.load_image`), so an upload
gets the same blob as the same file on disk. Every failure is a :class:`DecoderError`
naming the upload: the server turns it into a 400 for that image only.
"""

from __future__ import annotations

import io
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from decoder import fast_png
from decoder.errors import DecoderError
from decoder.preprocess import load_image, preprocess
from decoder.spec import PreprocessSpec

URL_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Upload:
    """An image sent in the request body: its bytes and the name the client gave it."""

    name: str
    data: bytes


@dataclass(frozen=True)
class RemoteImage:
    """An http(s) URL the server may fetch (only with --allow-image-urls)."""

    url: str
    max_bytes: int
    timeout: float


Source = Upload | RemoteImage | str  # str: a server path already checked against the image roots


def source_name(source: Source) -> str:
    """How results and errors name the image."""
    if isinstance(source, Upload):
        return source.name
    if isinstance(source, RemoteImage):
        return source.url
    return source


def pixels_of(source: Source, channels: int) -> np.ndarray:
    """DIGITS's ``load_image`` of the source: uint8 HxW or HxWx3 RGB."""
    if isinstance(source, str):
        return load_image(source, channels)
    data = fetch(source) if isinstance(source, RemoteImage) else source.data
    return decode_bytes(data, source_name(source), channels)


def blob_of(source: Source, spec: PreprocessSpec) -> np.ndarray:
    """The float32 (C, H, W) blob DIGITS would feed the network for this source."""
    if isinstance(source, str):
        return preprocess(source, spec)  # the file path names itself in every error
    return preprocess(pixels_of(source, spec.channels), spec)


def decode_bytes(data: bytes, name: str, channels: int) -> np.ndarray:
    """An image file's bytes -> pixels, refusing empty, unknown, truncated and oversized (bomb) images."""
    if not data:
        raise DecoderError("is empty (0 bytes), not an image", name)
    pixels = fast_png.decode_png(data) if fast_png.available() else None
    if pixels is not None:
        return load_image(pixels, channels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the size check below refuses it
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise DecoderError(f"refused as a possible decompression bomb ({exc})", name) from None
    except Image.UnidentifiedImageError:
        raise DecoderError("not an image file Pillow can read (unknown or corrupt format)", name) from None
    except Exception as exc:  # Pillow's plugins raise many types on broken headers
        raise DecoderError(_truncation(f"cannot decode the image ({type(exc).__name__}: {exc})"), name) from None
    try:
        return load_image(image, channels)  # checks the size from the header before decoding
    except DecoderError as exc:
        raise DecoderError(_truncation(exc.message), exc.path or name) from None
    finally:
        image.close()


def _truncation(message: str) -> str:
    """Say "truncated" first when Pillow's words mean the data stops early (an interrupted upload)."""
    if "truncated" in message.lower() or "broken data stream" in message.lower():
        return f"the upload is truncated or corrupt: {message}"
    return message


def inside_roots(path: str, roots: tuple[Path, ...]) -> str:
    """``path`` resolved (links followed) when it lies below one of ``roots``; a DecoderError otherwise."""
    if not roots:
        raise DecoderError("this server reads no files named by clients (start it with --image-root FOLDER)", path)
    resolved = Path(os.path.realpath(path))
    for root in roots:
        if resolved == root or root in resolved.parents:
            return str(resolved)
    raise DecoderError("is outside the folders this server may read (--image-root)", path)


def is_url(text: str) -> bool:
    """DIGITS's ``utils.is_url``: a string with a scheme and a host."""
    parsed = urllib.parse.urlparse(text)
    return bool(parsed.scheme) and bool(parsed.netloc)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s): a redirect to file:// or ftp:// must not read those."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if urllib.parse.urlparse(newurl).scheme not in URL_SCHEMES:
            raise DecoderError("redirects to a URL that is not http(s); refused", req.full_url)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(remote: RemoteImage) -> bytes:
    """The body behind an http(s) URL, at most ``max_bytes`` and ``timeout`` seconds in total."""
    url = remote.url
    if urllib.parse.urlparse(url).scheme not in URL_SCHEMES:
        raise DecoderError("only http:// and https:// image URLs are fetched", url)
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    deadline = time.monotonic() + remote.timeout
    try:
        with opener.open(url, timeout=remote.timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > remote.max_bytes:
                raise DecoderError(f"is {int(declared):,} bytes, over the limit of {remote.max_bytes:,} bytes", url)
            chunks, size = [], 0
            while chunk := response.read(65536):
                size += len(chunk)
                if size > remote.max_bytes:
                    raise DecoderError(f"is over the limit of {remote.max_bytes:,} bytes", url)
                if time.monotonic() > deadline:
                    raise DecoderError(f"took longer than {remote.timeout:g} s to download", url)
                chunks.append(chunk)
    except DecoderError:
        raise
    except urllib.error.HTTPError as exc:
        raise DecoderError(f"the server answered {exc.code} {exc.reason}", url) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DecoderError(f"cannot download the image ({reason})", url) from None
    return b"".join(chunks)
