"""Counters and histograms for GET /metrics, in Prometheus's text exposition format (version 0.0.4).

Written by hand because the format is a few lines of text and the server needs four
series: requests (by endpoint and status), images and image errors, request latency, and
the size of each ONNX Runtime call (the proof that concurrent requests were coalesced).
Everything happens on the event loop thread or under a lock, so plain ints suffice.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Sequence

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    """Cumulative-bucket histogram: counts per upper bound, sum and count."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # last: +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {running}')
        suffix = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{suffix} {self.total:.6f}")
        out.append(f"{name}_count{suffix} {self.count}")
        return out


class Metrics:
    """The server's numbers; :meth:`render` gives the /metrics page."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, Histogram] = {}
        self.images = 0
        self.image_errors = 0
        self.batches = Histogram(BATCH_BUCKETS)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[endpoint, status] += 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, size: int, errors: int) -> None:
        with self.lock:
            self.batches.observe(size)
            self.images += size
            self.image_errors += errors

    def render(self) -> str:
        with self.lock:
            lines = [
                "# HELP decode_requests_total HTTP requests answered, by endpoint and status code.",
                "# TYPE decode_requests_total counter",
            ]
            for (endpoint, status), count in sorted(self.requests.items()):
                lines.append(f'decode_requests_total{{endpoint="{endpoint}",status="{status}"}} {count}')
            lines += [
                "# HELP decode_request_errors_total HTTP requests answered with a 4xx or 5xx status.",
                "# TYPE decode_request_errors_total counter",
                f"decode_request_errors_total {sum(n for (_, s), n in self.requests.items() if s >= 400)}",
                "# HELP decode_request_seconds Time from request start to response, by endpoint.",
                "# TYPE decode_request_seconds histogram",
            ]
            for endpoint, histogram in sorted(self.latency.items()):
                lines += histogram.lines("decode_request_seconds", f'endpoint="{endpoint}"')
            lines += [
                "# HELP decode_images_total Images sent to the model (including those that failed to decode).",
                "# TYPE decode_images_total counter",
                f"decode_images_total {self.images}",
                "# HELP decode_image_errors_total Images refused (unreadable, not an image, too large).",
                "# TYPE decode_image_errors_total counter",
                f"decode_image_errors_total {self.image_errors}",
                "# HELP decode_batch_size Images per ONNX Runtime call (several requests coalesced).",
                "# TYPE decode_batch_size histogram",
                *self.batches.lines("decode_batch_size"),
            ]
        return "\n".join(lines) + "\n"
