"""`decode IMAGES... --model M`: labels, probabilities and top-k for files, folders, globs and lists.

Results go to stdout (DIGITS-style text, or ``--json``: one object per line) or to a file
(``--output results.csv | results.jsonl``), written batch by batch under a temporary
name and renamed into place at the end, so a crash never leaves a half-written file with
the real name. Everything else goes to stderr: one line per unreadable image (the run
goes on, then exits 2 with a count; ``--strict`` stops at the first), a progress bar when
stderr is a terminal and the results are not printed there, and a closing summary with
accuracy, per-class accuracy and the confusion matrix when true classes are known.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from decoder.cli.options import (
    batch_size_option,
    device_option,
    image_folder_option,
    model_option,
    strict_option,
)
from decoder.decoding import Prediction, label_of
from decoder.errors import DecoderError

if TYPE_CHECKING:
    from decoder.runtime import BatchResult

OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def format_prediction(prediction: Prediction) -> str:
    """DIGITS-style text: the label with its percentage rounded to 2 places, then the top-k."""
    lines = [f"{prediction.image}: {prediction.label} ({100 * prediction.probability:.2f}%)"]
    width = max(len(r.label) for r in prediction.top_k)
    for rank, entry in enumerate(prediction.top_k, 1):
        lines.append(f"  {rank}. {entry.label:<{width}}  {100 * entry.probability:6.2f}%")
    return "\n".join(lines)


def prediction_json(prediction: Prediction) -> str:
    """The ``--json`` line of one prediction: ``json.dumps(prediction.to_dict())``."""
    return json.dumps(prediction.to_dict())


def json_lines(
    names: Sequence[str], probabilities: list[list[float]], order: list[list[int]], labels: Sequence[str]
) -> list[str]:
    """``--json`` lines straight from a batch's numbers, character for character :func:`prediction_json`.

    Building a Prediction per image and ``dataclasses.asdict`` cost ~25 us an image; this
    costs ~5 us and the format test pins it to the object path (key order, float repr,
    ``ensure_ascii`` escaping, NaN spelled as ``json`` spells it).
    """
    quoted: dict[int, str] = {}

    def label(index: int) -> str:
        if index not in quoted:
            quoted[index] = json.dumps(label_of(index, labels))
        return quoted[index]

    lines = []
    for name, row, ranked in zip(names, probabilities, order, strict=True):
        entries = ", ".join(f'{{"label": {label(i)}, "index": {i}, "probability": {_number(row[i])}}}' for i in ranked)
        best = ranked[0]
        lines.append(
            f'{{"image": {json.dumps(name)}, "label": {label(best)}, "index": {best}, '
            f'"probability": {_number(row[best])}, "top_k": [{entries}]}}'
        )
    return lines


def _number(value: float) -> str:
    # json.dumps writes finite floats with float.__repr__ and spells nan/inf as NaN/Infinity.
    text = repr(value)
    return text if text[-1] not in "nf" else json.dumps(value)


@click.command()
@click.argument("images", nargs=-1, required=True)
@model_option
@click.option("--top-k", "-k", default=5, show_default=True, type=click.IntRange(1), help="How many classes to list.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line on stdout instead of text.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write results to FILE.csv or FILE.jsonl instead of stdout (atomically: temporary name, then rename).",
)
@batch_size_option
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(0),
    help="Threads decoding batches ahead of inference (small nets: each also runs its batches) "
    "[default: chosen for the model, 2 for small nets, 1 for large ones].",
)
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(1),
    help="ONNX Runtime threads per call [default: chosen for the model: 1 per worker for small nets, "
    "every core for large ones].",
)
@device_option
@click.option("--pool", type=click.Choice(["thread", "process"]), default="thread", hidden=True)
@strict_option
@image_folder_option
@click.option(
    "--confusion",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Draw the confusion matrix to this image (needs true classes and matplotlib).",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Compute on Ray (needs the ray extra): alone, a local Ray for this run; with `auto` (RAY_ADDRESS, "
    "else the cluster started on this machine), HOST:PORT or ray://HOST:PORT, that cluster. Same rows and "
    "summary; --workers is then the number of actors [default: one per CPU]. See docs/ray.md.",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar [default: when stderr is a terminal].")
@click.option("--quiet", "-q", is_flag=True, help="No summary (errors are still reported).")
def predict(
    images: tuple[str, ...],
    model_path: str,
    top_k: int,
    as_json: bool,
    output: Path | None,
    batch_size: int | None,
    workers: int | None,
    threads: int | None,
    device: str,
    pool: str,
    strict: bool,
    image_folder: str | None,
    confusion: Path | None,
    progress: bool | None,
    quiet: bool,
    ray_address: str | None = None,
) -> int:
    """Classify IMAGES (files, folders, globs or DIGITS list files) with DIGITS's preprocessing and labels.

    \b
    A list file (.txt) holds `path [class index]` per line, as DIGITS's Classify Many.
    True classes (from the list, or from folders named after the labels) add accuracy,
    per-class accuracy and a confusion matrix to the summary on stderr.
    """
    from decoder.cli.inputs import expand_inputs
    from decoder.evaluation import Tally, require_matplotlib
    from decoder.runtime import Model

    if output is not None and output.suffix.lower() not in OUTPUT_FORMATS:
        raise click.BadParameter("the file must end in .csv or .jsonl", param_hint="--output")
    if confusion is not None:
        require_matplotlib()
    if ray_address is not None:
        from decoder.ray.cluster import require_ray

        require_ray(ray_address)
    model = Model.load(model_path, threads=threads, providers=device, pipeline=workers != 0)
    model.require_classifier()  # a detector's outputs are no label: one line, exit 2, before any work
    inputs = expand_inputs(images, model.labels, image_folder, model.num_classes)
    truths = [item.truth for item in inputs]
    known = any(t is not None for t in truths)
    if confusion is not None and not known:
        raise DecoderError(
            "--confusion needs true classes: a list file with class indices, or folders named after the "
            f"model's labels ({', '.join(model.labels[:5])}{', ...' if len(model.labels) > 5 else ''})"
        )
    stderr = click.get_text_stream("stderr")
    show_progress = (
        progress if progress is not None else _is_tty(stderr) and (output is not None or not _is_tty(sys.stdout))
    )
    bar = Progress(len(inputs), stderr) if show_progress else None
    tally = Tally(model.labels)
    failures = 0
    started = time.perf_counter()
    with ResultSink(output, as_json, top_k, known) as sink:
        paths = [item.path for item in inputs]
        if ray_address is not None:
            from decoder.ray.batches import predict_batches_on_ray

            results = predict_batches_on_ray(
                model, paths, top_k, batch_size, workers, threads or 1, ray_address, providers=device
            )
        else:
            results = model.predict_batches(paths, top_k, batch_size, workers, pool)  # type: ignore[arg-type]
        for result in results:
            if result.failures:
                if bar:
                    bar.clear()
                if strict:
                    first = result.failures[0]
                    sink.write(result, truths, count=sum(q < first.position for q in result.positions))
                    raise first.error
                for failure in result.failures:
                    click.echo(f"decode: error: {failure.error}", err=True)
                failures += len(result.failures)
            sink.write(result, truths)
            if known:
                for position, top in zip(result.positions, result.top_indices.tolist(), strict=True):
                    if truths[position] is not None:
                        tally.add(truths[position], top[0], top)
            if bar:
                last = max(result.positions[-1:] + [f.position for f in result.failures[-1:]])
                bar.update(last + 1)
    if bar:
        bar.clear()
    elapsed = time.perf_counter() - started
    if confusion is not None:
        from decoder.evaluation import draw_confusion

        draw_confusion(tally, confusion)
    if not quiet and (len(inputs) > 1 or failures):
        _summary(len(inputs), failures, elapsed, output, tally, confusion)
    return 2 if failures else 0


def _summary(
    total: int, failures: int, elapsed: float, output: Path | None, tally: Any, confusion: Path | None
) -> None:
    rate = f" ({total / elapsed:,.0f} images/s)" if elapsed > 0 else ""
    line = f"decode: {total - failures:,} of {total:,} images classified in {elapsed:.2f} s{rate}"
    if failures:
        line += f"; {failures:,} could not be read (listed above)"
    click.echo(line, err=True)
    if output is not None:
        click.echo(f"decode: results written to {output}", err=True)
    report = tally.report()
    if report:
        click.echo(report, err=True)
    if confusion is not None:
        click.echo(f"decode: confusion matrix drawn to {confusion}", err=True)


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ResultSink:
    """Where predictions go: stdout (text / JSON lines) or a .csv / .jsonl file written atomically.

    The file is written under a hidden temporary name in the destination folder (same
    filesystem, so the final ``os.replace`` is atomic) and flushed after every batch, so a
    reader of the temporary file sees progress; it gets its real name only when the run
    ends normally (broken images do not count as abnormal: the good results are kept).
    """

    def __init__(self, output: Path | None, as_json: bool, top_k: int, with_truth: bool) -> None:
        self.output = output
        self.kind = OUTPUT_FORMATS[output.suffix.lower()] if output else ("jsonl" if as_json else "text")
        self.top_k = top_k
        self.with_truth = with_truth and self.kind == "csv"
        self.temporary: Path | None = None
        self.stream: IO[str] | None = None
        self.writer: Any = None
        self.labels: tuple[str, ...] = ()

    def __enter__(self) -> ResultSink:
        if self.output is None:
            return self
        self.temporary = self.output.with_name(f".{self.output.name}.{os.getpid()}.tmp")
        try:
            self.stream = open(self.temporary, "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise DecoderError(f"cannot write the results file ({exc.strerror or exc})", self.output) from None
        if self.kind == "csv":
            self.writer = csv.writer(self.stream)
            header = ["image", "label", "index", "probability"]
            for rank in range(2, self.top_k + 1):
                header += [f"label_{rank}", f"probability_{rank}"]
            if self.with_truth:
                header += ["true_index", "correct"]
            self.writer.writerow(header)
        return self

    def write(self, result: BatchResult, truths: list[int | None], count: int | None = None) -> None:
        """The first ``count`` rows of ``result`` (all by default); flushed, so readers see progress."""
        count = len(result.positions) if count is None else count
        if not count:
            return
        if self.kind == "text":
            lines = [format_prediction(p) for p in result.predictions[:count]]
        else:
            names = result.names[:count]
            probabilities = result.probabilities[:count].tolist()
            order = result.top_indices[:count].tolist()
            if self.kind == "jsonl":
                lines = json_lines(names, probabilities, order, result.labels)
            else:
                self.writer.writerows(self._csv_rows(names, probabilities, order, result, truths))
                lines = None
        stream = self.stream or sys.stdout
        if lines is not None:
            stream.write("\n".join(lines) + "\n")
        stream.flush()

    def _csv_rows(
        self,
        names: list[str],
        probabilities: list[list[float]],
        order: list[list[int]],
        result: BatchResult,
        truths: list[int | None],
    ) -> list[list[Any]]:
        rows = []
        for name, row, ranked, position in zip(names, probabilities, order, result.positions, strict=False):
            best = ranked[0]
            cells: list[Any] = [name, label_of(best, result.labels), best, row[best]]
            for index in ranked[1:]:
                cells += [label_of(index, result.labels), row[index]]
            cells += [""] * (2 * (self.top_k - len(ranked)))  # fewer classes than --top-k
            if self.with_truth:
                truth = truths[position]
                cells += ["", ""] if truth is None else [truth, int(truth == best)]
            rows.append(cells)
        return rows

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self.stream is None or self.temporary is None or self.output is None:
            return
        try:
            self.stream.close()
            if kind is None:
                os.replace(self.temporary, self.output)
        except OSError as exc:
            raise DecoderError(f"cannot write the results file ({exc.strerror or exc})", self.output) from None
        finally:
            self.temporary.unlink(missing_ok=True)


class Progress:
    """A one-line progress bar on stderr: count, percentage, rate and ETA, redrawn at most 10 times a second."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total = total
        self.stream = stream
        self.started = time.perf_counter()
        self.last_draw = 0.0
        self.drawn = False

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last_draw < 0.1 and done < self.total:
            return
        self.last_draw = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        eta_text = "--:--" if eta == float("inf") else f"{int(eta) // 60:02d}:{int(eta) % 60:02d}"
        fraction = done / self.total if self.total else 1.0
        filled = int(24 * fraction)
        bar = "#" * filled + "-" * (24 - filled)
        width = len(f"{self.total:,}")
        text = f"\r[{bar}] {done:>{width},}/{self.total:,} {100 * fraction:3.0f}%  {rate:,.0f} img/s  ETA {eta_text}"
        self.stream.write(text + "\x1b[K")
        self.stream.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False
