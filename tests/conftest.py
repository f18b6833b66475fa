"""Suite-wide settings: the optimized-graph cache (decoder.session_cache) lives in a temporary folder.

Without this, every large-model test would leave files in the user's ~/.cache/decoder; the
variable is inherited by the `decode` processes tests start.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _session_cache_in_a_temporary_folder() -> Iterator[None]:
    folder = tempfile.mkdtemp(prefix="decoder-test-cache-")
    previous = os.environ.get("DECODER_CACHE")
    os.environ["DECODER_CACHE"] = folder
    yield
    if previous is None:
        os.environ.pop("DECODER_CACHE", None)
    else:
        os.environ["DECODER_CACHE"] = previous
    shutil.rmtree(folder, ignore_errors=True)
