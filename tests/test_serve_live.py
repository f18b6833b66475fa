"""`decode serve` as a real process (uvicorn on a free loopback port): DIGITS's curl, streamed oversized
bodies, a bounded load, SIGTERM with a request in flight, and the web page in headless Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

from scripts.load_test import multipart, run_phase, start_server, stop_server
from tests.test_serve_api import CLASSIFY_ONE, JOB, LENET, SAMPLES, sample

LIMIT = 1 << 20
#: uvicorn stops gracefully on SIGTERM, then re-raises the signal: the exit status is -SIGTERM.
GRACEFUL = (0, -signal.SIGTERM)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    process, url = start_server([str(LENET), "--job-id", f"lenet={JOB}", "--max-upload", "1MB"])
    yield url
    assert stop_server(process) in GRACEFUL


def post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def form(fields: dict[str, str], path: Path) -> tuple[bytes, str]:
    """Like ``curl -F job_id=... -F image_file=@path``."""
    body, content_type = multipart(path)
    boundary = content_type.split("boundary=")[1]
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    )
    return head + body, content_type


def test_the_digits_curl_gets_digits_answer(server: str) -> None:
    body, content_type = form({"job_id": JOB}, sample(7))
    status, answer = post(f"{server}{CLASSIFY_ONE}", body, content_type)
    assert status == 200
    assert answer["predictions"][0][0] == "7" and len(answer["predictions"]) == 5
    body, content_type = multipart(sample(3))
    status, answer = post(f"{server}{CLASSIFY_ONE}?job_id={JOB}", body, content_type)
    assert (status, answer["predictions"][0][0]) == (200, "3")


def test_streamed_body_over_the_limit_is_cut_off_with_413(server: str) -> None:
    """No Content-Length (chunked): the server counts and answers 413 long before the 8 MB are sent."""
    host, port = server.removeprefix("http://").split(":")
    chunk = b"\0" * 65536
    sent, answer = 0, b""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # little room for bytes in flight
        sock.settimeout(30)
        sock.connect((host, int(port)))
        sock.sendall(
            f"POST {CLASSIFY_ONE}?job_id=lenet HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n\r\n".encode()
        )
        part = b'--x\r\nContent-Disposition: form-data; name="image_file"; filename="big.png"\r\n\r\n'
        sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        sock.setblocking(False)
        try:
            pending = b""
            while sent < 16 * LIMIT and not answer:
                pending = pending or b"%x\r\n%s\r\n" % (len(chunk), chunk)
                try:
                    done = sock.send(pending)
                    pending, sent = pending[done:], sent + done
                except BlockingIOError:
                    time.sleep(0.01)
                with contextlib.suppress(BlockingIOError):
                    answer = sock.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.setblocking(True)
        if not answer:
            answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"over the limit of 1,048,576 bytes" in answer
    assert sent < 8 * LIMIT  # answered long before the whole body was sent
    assert urllib.request.urlopen(f"{server}/healthz", timeout=10).status == 200


def test_bounded_load_has_no_errors_and_coalesces(server: str) -> None:
    phase = run_phase(server, "lenet", clients=16, requests=300)
    assert phase.errors == 0
    assert len(phase.latencies) == 300
    assert phase.mean_batch > 1.0  # concurrent requests shared ONNX Runtime calls
    metrics = urllib.request.urlopen(f"{server}/metrics", timeout=10).read().decode()
    assert 'decode_requests_total{endpoint="classify_one",status="200"}' in metrics


def test_sigterm_finishes_the_request_in_flight(tmp_path: Path) -> None:
    os.environ["TMPDIR"], previous = str(tmp_path), os.environ.get("TMPDIR")
    try:
        process, url = start_server([str(LENET)])
    finally:
        if previous is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = previous
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("decode-serve-")]  # its private folder
    host, port = url.removeprefix("http://").split(":")
    body, content_type = multipart(sample(9))
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(
            f"POST {CLASSIFY_ONE}?job_id=lenet HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:100]
        )
        time.sleep(0.5)  # the server is now waiting for the rest of the body
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # it stops accepting new connections ...
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                time.sleep(0.1)
            except OSError:
                break
        else:
            pytest.fail("the server still accepts connections after SIGTERM")
        sock.sendall(body[100:])  # ... but finishes this request
        answer = b""
        while b"]]}" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["predictions"][0][0] == "9"
    assert process.wait(30) in GRACEFUL
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("decode-serve-")]  # removed at exit


# --------------------------------------------------------------------------- the page in a browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver; .ci/run does)")
    profile = tempfile.mkdtemp(prefix="decode-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_page_uploads_a_digit_and_shows_its_label(server: str, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    assert JOB in browser.find_element(By.CSS_SELECTOR, "#model option").text
    browser.find_element(By.ID, "files").send_keys(str(sample(7)))
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "label").text)
    assert browser.find_element(By.ID, "label").text == "7"
    bars = browser.find_elements(By.CSS_SELECTOR, "#top5 tr")
    assert len(bars) == 5 and bars[0].text.startswith("7")
    # then `decode visualize`'s pictures (slow: matplotlib draws every layer), or a clear reason for none
    WebDriverWait(browser, 180).until(lambda d: "pictures" in d.find_element(By.ID, "pictures-status").text)
    status = browser.find_element(By.ID, "pictures-status").text
    try:
        import matplotlib  # noqa: F401

        titles = [img.get_attribute("alt") for img in browser.find_elements(By.CSS_SELECTOR, "#pictures img")]
        assert any("conv1 filters" in t for t in titles) and any("activations" in t for t in titles), status
    except ImportError:
        assert "pip install 'caffe-decoder[viz]'" in status
    # several images with their truth (a DIGITS list): a table, the accuracy and the confusion matrix
    samples = sorted(SAMPLES.glob("digit_*.png"))
    truth = Path(tempfile.mkdtemp(prefix="decode-truth-")) / "truth.txt"
    truth.write_text("".join(f"{p.name} {p.stem.split('_')[1]}\n" for p in samples))
    try:
        browser.find_element(By.ID, "list").send_keys(str(truth))
        files = browser.find_element(By.ID, "files")
        browser.execute_script("arguments[0].value = '';", files)
        files.send_keys("\n".join(str(p) for p in samples))
        WebDriverWait(browser, 30).until(lambda d: "classified" in d.find_element(By.ID, "many-title").text)
    finally:
        shutil.rmtree(truth.parent)
    assert browser.find_element(By.ID, "many-title").text == f"{len(samples)} of {len(samples)} images classified"
    assert browser.find_element(By.ID, "accuracy").text.startswith("Accuracy: 100.00%")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results tr")) == len(samples) + 1
    assert browser.find_elements(By.CSS_SELECTOR, "#confusion td.diagonal")


def test_a_busy_port_is_one_line(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    from decoder.cli.main import main

    port = server.rsplit(":", 1)[1]
    assert main(["serve", str(LENET), "--port", port]) == 2
    assert capsys.readouterr().err == f"decode: error: cannot listen on 127.0.0.1:{port} (Address already in use)\n"
