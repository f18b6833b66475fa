"""Load test for `decode serve`: images/s and p50/p99 latency for 1 sequential client and N concurrent ones.

    python scripts/load_test.py                      # starts `decode serve converted_models/lenet.onnx`
    python scripts/load_test.py --url http://127.0.0.1:5000 --model lenet --requests 2000

Each request is DIGITS's classify_one (one multipart upload of a sample digit, the
``curl -F image_file=@digit.png`` of DIGITS's docs); every answer is checked (status 200 and
the digit's own label), so "errors" counts wrong answers too. The clients are asyncio tasks
speaking HTTP/1.1 through h11 (uvicorn's own parser) on keep-alive connections: cheap
enough that one client process can load the server. Both phases run against the same
server in the same run; the ratio of their throughputs is the figure that matters (this
machine's absolute numbers vary with what else runs on it). The server's /metrics give the
mean number of images per ONNX Runtime call in each phase: the proof of coalescing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import h11

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "converted_models" / "samples"
CLASSIFY_ONE = "/models/images/classification/classify_one.json"


@dataclass(frozen=True)
class Phase:
    """What one phase measured."""

    clients: int
    requests: int
    errors: int
    seconds: float
    latencies: tuple[float, ...]
    mean_batch: float
    client_cpu: float = float("nan")  # CPU seconds per request: this process (the clients)
    server_cpu: float = float("nan")  # ... the server process, all threads
    loop_cpu: float = float("nan")  # ... the server's main thread (the event loop)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def cpu_line(self) -> str:
        return (
            f"     CPU per request: clients {1000 * self.client_cpu:.2f} ms, server {1000 * self.server_cpu:.2f} ms "
            f"(event loop {1000 * self.loop_cpu:.2f} ms)"
        )

    def line(self) -> str:
        return (
            f"{self.clients:>3} client(s): {self.requests:>6,} requests in {self.seconds:6.2f} s = "
            f"{self.rate:7,.0f} images/s, p50 {1000 * self.percentile(0.5):6.2f} ms, "
            f"p99 {1000 * self.percentile(0.99):6.2f} ms, errors {self.errors}, "
            f"mean images per model call {self.mean_batch:.1f}"
        )


def multipart(path: Path, field: str = "image_file") -> tuple[bytes, str]:
    """A multipart/form-data body with one file part, and its content type."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{path.name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Connection:
    """One keep-alive HTTP/1.1 connection driven by h11."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    async def post(self, target: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        headers = [("Host", self.host), ("Content-Type", content_type), ("Content-Length", str(len(body)))]
        data = self.h11.send(h11.Request(method="POST", target=target, headers=headers))
        data += self.h11.send(h11.Data(data=body)) + self.h11.send(h11.EndOfMessage())
        self.writer.write(data)
        status, chunks = 0, []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        return status, b"".join(chunks)

    def close(self) -> None:
        self.writer.close()


async def _client(
    url: str, target: str, bodies: list[tuple[bytes, str, bytes]], count: int, start: int
) -> tuple[list[float], int]:
    parsed = urlparse(url)
    connection = await Connection.open(parsed.hostname or "127.0.0.1", parsed.port or 80)
    latencies, errors = [], 0
    try:
        for index in range(start, start + count):
            body, content_type, expected = bodies[index % len(bodies)]
            began = time.perf_counter()
            try:
                status, answer = await connection.post(target, body, content_type)
            except (OSError, h11.ProtocolError):
                errors += 1
                connection.close()
                connection = await Connection.open(parsed.hostname or "127.0.0.1", parsed.port or 80)
                continue
            latencies.append(time.perf_counter() - began)
            errors += status != 200 or expected not in answer
    finally:
        connection.close()
    return latencies, errors


def batch_totals(url: str) -> tuple[float, float]:
    """(images, model calls) so far, from the server's /metrics."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    total = re.search(r"^decode_batch_size_sum (\S+)$", text, re.M)
    calls = re.search(r"^decode_batch_size_count (\S+)$", text, re.M)
    return (float(total.group(1)) if total else 0.0), (float(calls.group(1)) if calls else 0.0)


def server_cpu(pid: int | None) -> tuple[float, float]:
    """(all threads, main thread) CPU seconds of a local process, from /proc; NaN elsewhere."""
    if pid is None or not os.path.isdir(f"/proc/{pid}/task"):
        return float("nan"), float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    total = main_thread = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        used = (int(fields[11]) + int(fields[12])) / tick
        total += used
        main_thread += used if int(tid) == pid else 0.0
    return total, main_thread


def run_phase(
    url: str, model: str, clients: int, requests: int, samples: list[Path] | None = None, pid: int | None = None
) -> Phase:
    """``requests`` classify_one calls spread over ``clients`` concurrent keep-alive connections.

    ``pid``: the server's process id when it runs on this machine, to report its CPU time per request.
    """
    samples = samples or sorted(SAMPLES.glob("digit_*.png"))
    bodies = []
    for path in samples:
        body, content_type = multipart(path)
        label = path.stem.split("_")[-1]
        bodies.append((body, content_type, f'[["{label}",'.encode()))
    target = f"{CLASSIFY_ONE}?job_id={model}"
    before = batch_totals(url)

    async def everyone() -> list[tuple[list[float], int]]:
        share = [requests // clients + (i < requests % clients) for i in range(clients)]
        starts = [sum(share[:i]) for i in range(clients)]
        return await asyncio.gather(*(_client(url, target, bodies, n, s) for n, s in zip(share, starts, strict=True)))

    cpu_before, client_before = server_cpu(pid), time.process_time()
    began = time.perf_counter()
    results = asyncio.run(everyone())
    seconds = time.perf_counter() - began
    cpu_after, client_after = server_cpu(pid), time.process_time()
    after = batch_totals(url)
    calls = after[1] - before[1]
    latencies = tuple(t for lat, _ in results for t in lat)
    return Phase(
        clients,
        requests,
        sum(e for _, e in results),
        seconds,
        latencies,
        (after[0] - before[0]) / calls if calls else 0.0,
        (client_after - client_before) / requests,
        (cpu_after[0] - cpu_before[0]) / requests,
        (cpu_after[1] - cpu_before[1]) / requests,
    )


def cpu_bound_ratio(single: Phase, many: Phase, cores: int) -> float:
    """The throughput ratio the CPU times allow on an otherwise idle machine with ``cores`` cores.

    Sequential: one request's client and server CPU back to back (wake-up latencies left out,
    which flatters the sequential side). Concurrent: the cores shared by client and server
    work, but never faster than the event loop thread or the client alone allow.
    """
    sequential = 1 / (single.client_cpu + single.server_cpu)
    concurrent = min(cores / (many.client_cpu + many.server_cpu), 1 / many.loop_cpu, 1 / many.client_cpu)
    return concurrent / sequential


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    models: list[str], extra: list[str] | None = None, timeout: float = 60.0
) -> tuple[subprocess.Popen[bytes], str]:
    """`decode serve MODELS` on a free loopback port; returns the process and its base URL once /healthz answers."""
    port = free_port()
    command = [sys.executable, "-m", "decoder.cli.main", "serve", *models, "--port", str(port), *(extra or [])]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"decode serve exited with {process.returncode}: {process.stderr.read().decode()}")
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).read()
            return process, url
        except OSError:
            time.sleep(0.1)
    stop_server(process)
    raise RuntimeError(f"decode serve did not answer on {url} within {timeout:g} s")


def stop_server(process: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """SIGTERM (graceful: requests in flight finish), then wait; returns the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="A running server (default: start one on a free port).")
    parser.add_argument("--model", default="lenet", help="job_id to send (default: lenet).")
    parser.add_argument("--onnx", default=str(REPO / "converted_models" / "lenet.onnx"), help="Model to serve.")
    parser.add_argument("--requests", type=int, default=2000, help="Requests per phase.")
    parser.add_argument("--clients", type=int, default=64, help="Concurrent clients of the second phase.")
    parser.add_argument("--server-args", default="", help="Extra `decode serve` options, e.g. '--max-wait-ms 0'.")
    args = parser.parse_args()
    process = None
    url = args.url
    if url is None:
        process, url = start_server([args.onnx], args.server_args.split())
    try:
        pid = process.pid if process is not None else None
        run_phase(url, args.model, 4, 200)  # warm-up: imports, first session runs, connection setup
        single = run_phase(url, args.model, 1, args.requests, pid=pid)
        many = run_phase(url, args.model, args.clients, args.requests, pid=pid)
    finally:
        if process is not None:
            stop_server(process)
    print(f"decode serve load test, {os.cpu_count()} CPU(s), {url}")
    for phase in (single, many):
        print(phase.line())
        if process is not None:
            print(phase.cpu_line())
    print(f"throughput ratio {args.clients} clients / 1 sequential client: {many.rate / single.rate:.2f}x")
    if process is not None:
        cores = len(os.sched_getaffinity(0))
        print(
            f"CPU-bound ratio on an otherwise idle {cores}-core machine (from the CPU times above): "
            f"{cpu_bound_ratio(single, many, cores):.2f}x"
        )
    return 1 if single.errors or many.errors else 0


if __name__ == "__main__":
    sys.exit(main())
