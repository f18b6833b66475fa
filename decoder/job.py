"""Which DIGITS job a model came from: its job id and name, kept in the .onnx (``decoder.job``).

DIGITS's REST clients name a model by its job id (``job_id=20160809-163916-d65f``), so
`decode serve` must know it to answer them unchanged. Conversion records it from the
first place that has it:

1. info.json's ``"job id"`` (and ``"name"``), written into "Download Model" archives by
   DIGITS 5/6 (``ImageModelJob.json_dict``);
2. the name of the job folder (``~/digits/jobs/20160809-163916-d65f``) or of the archive as
   DIGITS's download button names it (``20160809-163916-d65f_epoch_30.0.tar.gz``).

Older archives renamed by hand carry neither; `decode serve --job-id STEM=ID` supplies it then.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decoder.errors import DecoderError

JOB_KEY = "decoder.job"

#: DIGITS's job ids: ``time.strftime('%Y%m%d-%H%M%S')`` + ``-`` + 4 hex digits (``digits/job.py``).
JOB_ID_PATTERN = re.compile(r"\d{8}-\d{6}-[0-9a-f]{4}")


@dataclass(frozen=True)
class DigitsJob:
    """A model's DIGITS job: its id (``None`` when unknown) and its name (``None`` when unknown)."""

    job_id: str | None
    name: str | None

    def to_metadata(self) -> dict[str, str]:
        return {JOB_KEY: json.dumps({"job_id": self.job_id, "name": self.name})}


def job_of(info: dict[str, Any], origin: str = "") -> DigitsJob | None:
    """The job recorded in info.json, else the one a DIGITS-named folder or archive gives; ``None`` if neither."""
    job_id = _text(info.get("job id"))
    name = _text(info.get("name"))
    if job_id is None and origin:
        found = JOB_ID_PATTERN.match(Path(origin).name)
        job_id = found.group(0) if found else None
    if job_id is None and name is None:
        return None
    return DigitsJob(job_id, name)


def job_metadata(info: dict[str, Any], origin: str = "") -> dict[str, str]:
    """The ``decoder.job`` metadata entry for conversion (empty when nothing is known)."""
    job = job_of(info, origin)
    return job.to_metadata() if job is not None else {}


def read_job(props: dict[str, str], path: str | None = None) -> DigitsJob | None:
    """The job stored in a model's metadata; ``None`` when absent; a damaged entry is a DecoderError."""
    if JOB_KEY not in props:
        return None
    try:
        body = json.loads(props[JOB_KEY])
    except (json.JSONDecodeError, RecursionError):
        body = None
    if not isinstance(body, dict) or not all(value is None or isinstance(value, str) for value in body.values()):
        message = f"corrupt decoder metadata in the .onnx file ({JOB_KEY} is not a JSON object of strings)"
        raise DecoderError(message, path)
    return DigitsJob(_text(body.get("job_id")), _text(body.get("name")))


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
