"""`decode visualize`'s output folder: PNGs, ``stats.json`` and a plain ``index.html``.

The page needs no network and no script: it is static HTML with relative links to
pictures beside it, so the folder can be zipped, mailed, or opened from a file browser.

What is drawn. Pictures cost time (matplotlib) and space, and a 200-layer net's 400
pictures tell less than a chosen few, so by default: the input; the filters of the first
:data:`FILTER_LAYERS` convolution layers (where filters are still pictures of something);
the activations of at most :data:`ACTIVATION_LAYERS` layer tops, evenly spaced from the
first to the last, each showing its first :data:`CHANNELS` channels; and the statistics of
EVERY layer top (the table, with an inline histogram, and ``stats.json``). ``draw_all``
(``decode visualize --all``) draws every convolution's filters and every top's activations
(up to :data:`~decoder.visualization.figures.MAX_MAPS` channels).

Layout of the folder::

    index.html  stats.json  input.png
    filters/NN-<layer>.png       one per drawn Convolution layer
    activations/NN-<layer>.png   one per drawn layer top (maps as tiles, vectors as bars)

``stats.json`` (``version`` 2): ``model``, ``image``, ``images`` (every input the statistics
cover), ``preprocessing`` (channels, height, width, resize_mode, channel_order, mean_kind,
scale), ``prediction`` (for the first image, as `decode --json`), ``drawn`` (what was
pictured, of how many), ``layers`` (the input first, then every layer top in network
order, each :meth:`LayerStats.to_dict` plus ``activation_png``, null when not drawn; NaN
and Inf statistics are ``null``) and ``filters`` (layer, shape, group, colour,
input_order, shown_order, scale, weight_mean, weight_std, png, grid), drawn layers only.
"""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decoder.errors import DecoderError
from decoder.visualization.analysis import FilterBank, Forward, LayerStats, Visualizer
from decoder.visualization.figures import MAX_MAPS, TileGrid

STATS_VERSION = 2
#: Default picture budget (``draw_all`` lifts it): convolution layers whose filters are drawn, ...
FILTER_LAYERS = 2
#: ... layer tops whose activations are drawn (evenly spaced, first and last included), ...
ACTIVATION_LAYERS = 16
#: ... and channels drawn per activation picture.
CHANNELS = 16


@dataclass
class Report:
    """What :func:`write_report` wrote, with the numbers and tile positions behind each picture.

    ``stats`` covers every layer top (input first); ``activations`` and ``activation_grids``
    are aligned with it, None where no picture was drawn. ``filters`` / ``filter_grids``
    are aligned with ``filter_banks``, the convolution layers whose filters were drawn (of
    ``filter_layers`` in the net). Paths are relative to ``folder``.
    """

    folder: Path
    index: Path
    stats_json: Path
    forward: Forward
    stats: list[LayerStats]
    filter_banks: list[FilterBank]
    draw_all: bool = False
    filter_layers: int = 0
    channels: int = CHANNELS
    input_picture: str = "input.png"
    activations: list[str | None] = field(default_factory=list)
    activation_grids: list[TileGrid | None] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)
    filter_grids: list[TileGrid] = field(default_factory=list)

    @property
    def pictures(self) -> list[str]:
        """Every PNG written, relative to ``folder``."""
        return [self.input_picture, *self.filters, *(a for a in self.activations if a)]


def chosen(count: int, limit: int) -> list[int]:
    """``limit`` indices out of ``range(count)``, evenly spaced, first and last included (all when fewer)."""
    if count <= limit:
        return list(range(count))
    if limit <= 1:
        return [count - 1][:limit]
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def write_report(
    model: str | os.PathLike[str] | Visualizer,
    image: str | os.PathLike[str] | list[str | os.PathLike[str]],
    folder: str | os.PathLike[str],
    *,
    draw_all: bool = False,
) -> Report:
    """Forward ``image`` (or several: statistics over all, pictures of the first) and write the folder.

    By default a bounded selection is drawn (see the module docstring); ``draw_all`` draws
    every convolution's filters and every layer top's activations.
    """
    from decoder.visualization import figures

    figures.require_matplotlib()  # fail before any work if pictures cannot be drawn
    viz = model if isinstance(model, Visualizer) else Visualizer(model)
    out = _prepare_folder(Path(folder))
    forward = viz.forward(image)
    stats = viz.statistics(forward)
    banks = list(viz.filters) if draw_all else list(viz.filters[:FILTER_LAYERS])
    channels = MAX_MAPS if draw_all else CHANNELS
    report = Report(
        out, out / "index.html", out / "stats.json", forward, stats, banks, draw_all, len(viz.filters), channels
    )
    assert viz.spec is not None  # forward() refuses models without one

    figures.save(figures.input_figure(forward.input, viz.spec), out / report.input_picture)
    names = _file_names([s.layer if s.type != "Input" else "input" for s in stats], [s.top for s in stats])
    blobs = [forward.input, *forward.blobs]
    drawn = {index + 1 for index in chosen(len(stats) - 1, len(stats) if draw_all else ACTIVATION_LAYERS)}
    for index, (blob, name) in enumerate(zip(blobs, names, strict=True)):
        if index not in drawn:
            report.activations.append(None)
            report.activation_grids.append(None)
            continue
        figure, grid = figures.activation_figure(blob, viz.labels, max_maps=channels)
        report.activations.append(f"activations/{name}.png")
        report.activation_grids.append(grid)
        figures.save(figure, out / f"activations/{name}.png")
    for name, bank in zip(_file_names([b.layer for b in banks]), banks, strict=True):
        figure, grid = figures.filter_figure(bank)
        report.filters.append(f"filters/{name}.png")
        report.filter_grids.append(grid)
        figures.save(figure, out / f"filters/{name}.png")

    report.stats_json.write_text(json.dumps(_stats_document(viz, report), indent=1) + "\n", encoding="utf-8")
    report.index.write_text(_index_html(viz, report), encoding="utf-8")
    return report


# --------------------------------------------------------------------------- files


def _prepare_folder(folder: Path) -> Path:
    if folder.exists() and not folder.is_dir():
        raise DecoderError("exists and is not a folder; give a folder for the pictures", folder)
    try:
        for sub in ("", "filters", "activations"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DecoderError(f"cannot create the output folder ({exc.strerror or exc})", folder) from None
    return folder


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "layer"


def _file_names(layers: list[str], tops: list[str] | None = None) -> list[str]:
    """``NN-layer`` (``NN-layer-top`` for layers with several tops): unique, safe, in network order."""
    several = {name for name in layers if layers.count(name) > 1}
    names = []
    for index, layer in enumerate(layers):
        suffix = f"-{_slug(tops[index])}" if tops is not None and layer in several else ""
        names.append(f"{index:02d}-{_slug(layer)}{suffix}")
    return names


# --------------------------------------------------------------------------- stats.json


def _stats_document(viz: Visualizer, report: Report) -> dict[str, Any]:
    spec = viz.spec
    prediction = report.forward.prediction
    layers = []
    for stat, activation in zip(report.stats, report.activations, strict=True):
        entry = stat.to_dict()
        entry["activation_png"] = activation
        layers.append(entry)
    filters = []
    for bank, picture, grid in zip(report.filter_banks, report.filters, report.filter_grids, strict=True):
        filters.append(
            {
                "layer": bank.layer,
                "shape": list(bank.weights.shape),
                "group": bank.group,
                "colour": bank.in_colour,
                "input_order": bank.input_order,
                "shown_order": "RGB" if bank.in_colour else None,
                "scale": bank.scale,
                "weight_mean": float(np.mean(bank.weights, dtype=np.float64)),
                "weight_std": float(np.std(bank.weights, dtype=np.float64)),
                "png": picture,
                "grid": {"tiles": grid.count, "rows": grid.rows, "cols": grid.cols, "zoom": grid.zoom},
            }
        )
    return {
        "version": STATS_VERSION,
        "model": viz.path,
        "image": report.forward.image,
        "images": list(report.forward.images),
        "drawn": {
            "all": report.draw_all,
            "activation_pictures": sum(a is not None for a in report.activations),
            "layer_tops": len(report.stats) - 1,
            "channels_per_picture": report.channels,
            "filter_pictures": len(report.filters),
            "convolution_layers": report.filter_layers,
        },
        "preprocessing": None
        if spec is None
        else {
            "channels": spec.channels,
            "height": spec.height,
            "width": spec.width,
            "resize_mode": spec.resize_mode,
            "channel_order": spec.channel_order,
            "mean_kind": spec.mean_kind,
            "scale": spec.scale,
        },
        "prediction": None if prediction is None else prediction.to_dict(),
        "input_png": report.input_picture,
        "layers": layers,
        "filters": filters,
    }


# --------------------------------------------------------------------------- index.html

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { text-align: center; }
th:first-child, td:first-child, td.text { text-align: left; }
tr.flagged { background: #fde8e8; }
.flag { color: #a00; font-weight: bold; }
section { margin: 1.5em 0; padding-top: 0.5em; border-top: 1px solid #ddd; }
img { max-width: 100%; image-rendering: pixelated; }
.pair { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _number(value: float, digits: int = 4) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.{digits}g}"


def _index_html(viz: Visualizer, report: Report) -> str:
    e = html.escape
    spec = viz.spec
    forward = report.forward
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>decode visualize: {e(Path(viz.path).name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(Path(viz.path).name)}</h1>",
        f"<p>Image <code>{e(forward.image)}</code>, model <code>{e(viz.path)}</code>. "
        'Numbers: <a href="stats.json">stats.json</a>.</p>',
    ]
    if forward.prediction is not None:
        ranked = ", ".join(f"{e(r.label)} {100 * r.probability:.2f}%" for r in forward.prediction.top_k)
        parts.append(f"<p><b>Prediction: {e(forward.prediction.label)}</b> (top {ranked})</p>")
    if spec is not None:
        mean_text = {"image": "minus the mean image", "pixel": "minus the mean pixel", "none": "no mean subtracted"}[
            spec.mean_kind
        ]
        order = f", channels {spec.channel_order}" if spec.channels == 3 else ""
        parts.append(
            f'<h2 id="input">Input</h2><p>{spec.channels}x{spec.height}x{spec.width}, resize {e(spec.resize_mode)}'
            f"{order}, {mean_text}, scale {spec.scale:g}. The right-hand panels are the blob the network "
            "receives, on a colour scale centred at 0 (white).</p>"
            f'<img src="{report.input_picture}" alt="input as the network sees it">'
        )
    parts.append("<h2>Layers</h2>")
    parts.append(f"<p>{e(_drawn_text(report))}</p>")
    parts.append(_stats_table(report))
    if report.filter_banks:
        parts.append("<h2>Filters</h2>")
    for bank, picture in zip(report.filter_banks, report.filters, strict=True):
        shape = "x".join(str(d) for d in bank.weights.shape)
        parts.append(
            f'<section id="filters-{e(_slug(bank.layer))}"><h3>{e(bank.layer)} filters ({shape})</h3>'
            f'<img src="{e(picture)}" alt="filters of {e(bank.layer)}"></section>'
        )
    parts.append("<h2>Activations</h2>")
    for index, stat in enumerate(report.stats):
        activation = report.activations[index]
        if activation is None:
            continue
        flags = "".join(f' <span class="flag">{e(f)}</span>' for f in stat.flags)
        parts.append(
            f'<section id="layer-{index}"><h3>{e(stat.layer)} ({e(stat.type)}), top <code>{e(stat.top)}</code>, '
            f"shape {e(str(list(stat.shape)))}{flags}</h3>"
            f'<img src="{e(activation)}" alt="activations of {e(stat.layer)}"></section>'
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _drawn_text(report: Report) -> str:
    """What the pictures cover, and how to get the rest."""
    tops = len(report.stats) - 1
    pictured = sum(a is not None for a in report.activations)
    inputs = len(report.forward.images) or 1
    over = "this input" if inputs == 1 else f"all {inputs} inputs (pictures show the first)"
    text = f"Statistics of every layer top over {over}; activation pictures of {pictured} of {tops} layer tops"
    if report.draw_all:
        return text + f" (up to {report.channels} channels each), filters of all {report.filter_layers} convolutions."
    return (
        text + f" (evenly spaced, first {report.channels} channels each) and filters of the first "
        f"{len(report.filters)} of {report.filter_layers} convolutions; `decode visualize --all` draws everything."
    )


def _histogram_svg(stat: LayerStats, width: int = 120, height: int = 26) -> str:
    """An inline bar chart of the blob's histogram (log counts), no picture file and no script."""
    counts = np.asarray(stat.histogram_counts, dtype=np.float64)
    if not counts.size or counts.max() <= 0:
        return ""
    heights = np.log1p(counts) / np.log1p(counts.max()) * height
    step = width / counts.size
    bars = "".join(
        f'<rect x="{i * step:.1f}" y="{height - h:.1f}" width="{step:.1f}" height="{h:.1f}"/>'
        for i, h in enumerate(heights)
        if h > 0
    )
    span = f"{stat.histogram_edges[0]:.3g} .. {stat.histogram_edges[-1]:.3g}"
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="histogram {span}"><title>{span}, log counts</title><g fill="#3b6ea8">{bars}</g></svg>'
    )


def _stats_table(report: Report) -> str:
    e = html.escape
    head = (
        "<table><tr><th>layer</th><th>type</th><th>top</th><th>shape</th><th>parameters</th><th>mean</th>"
        "<th>std</th><th>min</th><th>max</th><th>histogram (log)</th><th>zeros</th><th>all-zero units</th>"
        "<th>flags</th></tr>"
    )
    rows = [head]
    for index, s in enumerate(report.stats):
        css = ' class="flagged"' if s.flags else ""
        name = f'<a href="#layer-{index}">{e(s.layer)}</a>' if report.activations[index] else e(s.layer)
        rows.append(
            f'<tr{css}><td>{name}</td><td class="text">{e(s.type)}</td>'
            f'<td class="text">{e(s.top)}</td><td class="text">{e("x".join(str(d) for d in s.shape))}</td>'
            f"<td>{s.parameters:,}</td><td>{_number(s.mean)}</td><td>{_number(s.std)}</td>"
            f"<td>{_number(s.min)}</td><td>{_number(s.max)}</td><td>{_histogram_svg(s)}</td>"
            f"<td>{100 * s.zero_fraction:.1f}%</td>"
            f'<td>{len(s.dead_units)} / {s.units}</td><td class="text">{e("; ".join(s.flags))}</td></tr>'
        )
    rows.append("</table>")
    return "\n".join(rows)
