"""Joining a Ray cluster, or starting a local Ray for one run: what ``decode --ray [ADDRESS]`` means.

- no ADDRESS (``local``): a fresh Ray on this machine, for this run only (``RAY_ADDRESS``
  is ignored, so a run never lands on a cluster by surprise);
- ``auto``: the running cluster, found as Ray finds it: ``RAY_ADDRESS``, else the one
  started on this machine with ``ray start``;
- ``HOST:PORT`` (the GCS of a ``ray start --head``) or ``ray://HOST:PORT`` (Ray Client).

Either way the driver's ``decoder`` package is shipped to the workers (:func:`runtime_env`),
so every actor runs exactly the driver's preprocessing; the nodes need decoder's
dependencies only (``pip install "caffe-decoder[ray]"``).
Ray's own logs and progress bars are kept off the terminal: ``decode`` prints its own
progress bar, errors and summary, as in a local run.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from decoder.errors import DecoderError

#: What ``--ray ADDRESS`` accepts; anything else (e.g. an image folder that followed ``--ray``) is refused.
ADDRESS_PATTERN = re.compile(r"^(local|auto|ray://\S+|[A-Za-z0-9.\-\[\]:]+:\d+)$")


def check_address(address: str) -> str:
    """``address`` when it looks like a Ray address, else a DecoderError saying what was expected."""
    if not ADDRESS_PATTERN.match(address):
        raise DecoderError(
            f"--ray takes an optional cluster ADDRESS (auto, HOST:PORT or ray://HOST:PORT), not {address!r}; "
            "to start a local Ray, put --ray after the images or write --ray=local"
        )
    return address


def require_ray(address: str) -> None:
    """Fail early, before a long run, when ``address`` is no Ray address or Ray is not installed."""
    import importlib.util

    check_address(address)
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.data") is None:
        raise DecoderError(
            "--ray runs on Ray Data, which is not installed; install the optional extra: "
            "pip install 'caffe-decoder[ray]' (or pip install 'ray[data]')"
        )


def connect(address: str = "local") -> None:
    """Start or join Ray (see the module doc); a Ray already started in this process is reused.

    Either way Ray Data's own progress bars and logs are switched off (:func:`quiet_ray_data`).
    """
    import ray

    check_address(address)
    if ray.is_initialized():
        quiet_ray_data()
        return
    # Ray's info and warning lines (token auth, actor-restart caveats) would bury decode's own;
    # RAY_BACKEND_LOG_LEVEL does the same for the driver's C++ core worker, unless the user set it.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address == "local":
            ray.init(address="local", include_dashboard=False, runtime_env=runtime_env(), **quiet)
        else:
            ray.init(address=address, runtime_env=runtime_env(), **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a local Ray" if address == "local" else f"the Ray cluster at {address}"
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DecoderError(f"cannot start or reach {where} ({first})") from None
    quiet_ray_data()


def runtime_env() -> dict[str, Any]:
    """``ray.init(runtime_env=...)`` that ships the driver's ``decoder`` package to every worker.

    Ray uploads the folder once per job and caches it per node by content hash; workers
    put it first on their path. So a driver running from a source checkout works on a
    fresh cluster, and no node runs another version's preprocessing. (Ray accepts local
    folders only at the job level, in ``ray.init``, not per ``map_batches``.)
    """
    import decoder

    return {"py_modules": [os.path.dirname(os.path.abspath(decoder.__file__))]}


def quiet_ray_data() -> None:
    """No Ray Data progress bars or info logs: the CLI draws its own bar and summary."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    logging.getLogger("ray").setLevel(logging.WARNING)
