"""Hostile traffic in-process: oversized bodies, non-images, bombs, truncated files and bodies -> 4xx, serving on."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator

import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("multipart")

with warnings.catch_warnings():  # Starlette >= 1.x suggests httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from decoder.serve import Settings, create_app, load_models
from tests.test_serve_api import CLASSIFY_ONE, LENET, sample

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(load_models([LENET]), Settings(max_upload=LIMIT))
    with TestClient(app) as test_client:
        yield test_client


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def classify(client: TestClient, name: str, data: bytes) -> tuple[int, str]:
    response = client.post(f"{CLASSIFY_ONE}?job_id=lenet", files={"image_file": (name, data, "image/png")})
    body = response.json()
    return response.status_code, body["error"]["message"] if "error" in body else body["predictions"][0][0]


def still_serving(client: TestClient) -> None:
    assert classify(client, "digit_7.png", sample(7).read_bytes()) == (200, "7")


def test_body_over_the_limit_is_refused_413(client: TestClient) -> None:
    status, message = classify(client, "big.png", b"\0" * (LIMIT + 1))
    assert status == 413
    assert f"over the limit of {LIMIT:,} bytes" in message
    still_serving(client)


def bomb() -> bytes:
    """A PNG whose header claims 100,000 x 100,000 grey pixels (10 gigapixels) in a few dozen bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def noisy_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 80).convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("empty.png", lambda: b"", "empty.png: is empty (0 bytes)"),
        ("notes.png", lambda: b"hello, this is text", "notes.png: not an image file Pillow can read"),
        ("half.png", lambda: sample(7).read_bytes()[:-40], "half.png: the upload is truncated or corrupt"),
        ("half.jpg", lambda: noisy_jpeg()[:400], "half.jpg: the upload is truncated or corrupt"),
        ("bomb.png", bomb, "bomb.png: "),
        ("deep.png", lambda: png_bytes(Image.new("I;16", (8, 8))), "deep.png: "),
    ],
)
def test_bad_images_are_400_naming_the_upload(client: TestClient, name: str, make, expected: str) -> None:
    status, message = classify(client, name, make())
    assert status == 400, message
    assert message.startswith(expected)
    if name == "bomb.png":
        assert "decompression bomb" in message
    still_serving(client)


def test_truncated_multipart_body_is_400(client: TestClient) -> None:
    boundary = "XyZ"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image_file"; filename="d.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body = head + sample(7).read_bytes()[:100]  # the part and the closing boundary never arrive
    response = client.post(
        f"{CLASSIFY_ONE}?job_id=lenet",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]
    still_serving(client)
