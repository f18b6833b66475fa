"""What every request handler shares: the models and their batchers, settings, metrics, the private temp folder."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from decoder.errors import DecoderError
from decoder.serve.batcher import Batcher, Outcome
from decoder.serve.errors import ApiError
from decoder.serve.images import RemoteImage, Source, Upload, fetch
from decoder.serve.limits import Arrivals
from decoder.serve.metrics import Metrics
from decoder.serve.registry import ServedModel
from decoder.serve.settings import Settings


@dataclass
class ServerState:
    """Built once by :func:`decoder.serve.app.create_app`; reached from handlers as ``request.app.state.server``."""

    models: list[ServedModel]
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    arrivals: Arrivals = field(default_factory=Arrivals)
    batchers: dict[str, Batcher] = field(default_factory=dict)
    by_id: dict[str, ServedModel] = field(default_factory=dict)
    executor: ThreadPoolExecutor | None = None
    pictures: ThreadPoolExecutor | None = None
    downloads: ThreadPoolExecutor | None = None
    temp: Path | None = None

    def __post_init__(self) -> None:
        # Roots compared as real paths, like the client's paths (links followed).
        roots = tuple(Path(os.path.realpath(root)) for root in self.settings.image_roots)
        self.settings = replace(self.settings, image_roots=roots)
        self.executor = ThreadPoolExecutor(self.settings.workers, thread_name_prefix="decode-batch")
        self.pictures = ThreadPoolExecutor(1, thread_name_prefix="decode-pictures")
        self.downloads = ThreadPoolExecutor(8, thread_name_prefix="decode-downloads")
        # Private (0700) and removed at shutdown: `decode visualize` pictures are drawn here
        # before they are sent (uploads stay in memory, see read_form).
        self.temp = Path(tempfile.mkdtemp(prefix="decode-serve-"))
        for served in self.models:
            self.batchers[served.key] = Batcher(
                served.model,
                self.executor,
                self.metrics,
                self.settings.max_batch,
                self.settings.max_wait,
                self.settings.workers,
                self.arrivals,
            )
            for name in served.ids():
                self.by_id[name] = served

    def model(self, name: str | None, what: str = "job_id") -> ServedModel:
        """The model a client named; 400 when it named none, 404 when the name is unknown."""
        if name is None or not name.strip():
            raise ApiError(400, f"{what} is a required field (one of: {', '.join(self.by_id)})")
        served = self.by_id.get(name.strip())
        if served is None:
            raise ApiError(404, f"unknown {what} {name.strip()!r}: this server has {', '.join(self.by_id)}")
        return served

    async def classify(self, request: Request, served: ServedModel, sources: list[Source]) -> list[Outcome]:
        """Queue the images (the request stops counting as arriving) and await their probabilities."""
        if len(sources) > self.settings.max_images:
            raise ApiError(400, f"{len(sources):,} images in one request; the limit is {self.settings.max_images:,}")
        if any(isinstance(source, RemoteImage) for source in sources):
            fetched = await self._download(sources)
        else:
            fetched = list(sources)
        arrived(request)
        ready = [source for source in fetched if not isinstance(source, DecoderError)]
        answers = iter(await self.batchers[served.key].classify(ready))
        return [item if isinstance(item, DecoderError) else next(answers) for item in fetched]

    async def _download(self, sources: list[Source]) -> list[Source | DecoderError]:
        """URLs fetched side by side in their own threads, so a slow server never holds up a model call."""
        loop = asyncio.get_running_loop()

        async def one(source: Source) -> Source | DecoderError:
            if not isinstance(source, RemoteImage):
                return source
            try:
                data = await loop.run_in_executor(self.downloads, fetch, source)
            except DecoderError as exc:
                return exc
            return Upload(source.url, data)

        return list(await asyncio.gather(*(one(source) for source in sources)))

    async def close(self) -> None:
        for batcher in self.batchers.values():
            await batcher.close()
        for pool in (self.executor, self.pictures, self.downloads):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)


def arrived(request: Request) -> None:
    """The request has read its images: batches need not wait for it any longer."""
    arrival = getattr(request.state, "arrival", None)
    if arrival is not None:
        arrival.done()


class _InMemoryParser(MultiPartParser):
    """Starlette's multipart parser, keeping uploaded files in memory up to the request limit.

    Starlette spools a file part over 1 MB to an anonymous file in the system's temporary
    folder; here no upload ever touches the disk (the body is already capped at
    ``max_upload`` bytes by :class:`~decoder.serve.limits.RequestGuard`).
    """

    def __init__(self, *args: Any, spool: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spool_max_size = spool


async def read_form(request: Request, settings: Settings) -> FormData:
    """The multipart or urlencoded form; a malformed body is a 400 naming the problem."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        try:
            async with contextlib.aclosing(request.stream()) as stream:
                parser = _InMemoryParser(
                    request.headers, stream, max_files=settings.max_images, max_fields=1000, spool=settings.max_upload
                )
                return await parser.parse()
        except MultiPartException as exc:
            raise ApiError(400, f"malformed multipart body: {exc.message}") from None
    if content_type.startswith("application/x-www-form-urlencoded"):
        return await request.form(max_files=0, max_fields=1000)
    return FormData()


async def upload_of(field_value: Any, field_name: str) -> Upload | None:
    """An uploaded file field as an :class:`Upload` (in memory); ``None`` when the field is absent or empty."""
    if field_value is None:
        return None
    if not isinstance(field_value, UploadFile):
        if isinstance(field_value, str) and not field_value:
            return None
        raise ApiError(400, f"{field_name} must be a file upload (multipart/form-data), not a text field")
    data = await field_value.read()
    name = field_value.filename or field_name
    if not data and not field_value.filename:
        return None  # a browser sends an empty part for a file input left empty
    return Upload(name, data)
