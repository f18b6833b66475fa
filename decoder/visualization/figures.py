"""Pictures for `decode visualize`, drawn with matplotlib (the optional extra ``viz``).

Why matplotlib: it is the plotting library Python users already know, its colormaps and
colourbars give every picture a readable scale, and its object API (``Figure`` +
``FigureCanvasAgg``) draws off-screen without touching pyplot's global state, so calling
these functions inside a user's notebook changes nothing there. It is imported lazily:
the statistics in :mod:`decoder.visualization.analysis` need none of it.

Tile grids (filters, activation maps) are placed with ``Figure.figimage``: each weight or
activation value becomes an exact ``zoom x zoom`` block of pixels, never resampled, so a
5x5 kernel stays 25 crisp squares. :class:`TileGrid` records where the tiles are in the
PNG. The figure's DPI is a power of two so that pixel sizes survive the inch conversion.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from decoder.errors import DecoderError
from decoder.spec import PreprocessSpec
from decoder.visualization.analysis import Blob, FilterBank, LayerStats

#: Pixels per inch of grid pictures: a power of two, so ``pixels / DPI * DPI == pixels`` exactly.
DPI = 64
#: Diverging colormap for signed values (weights, de-meaned input): white is exactly 0.
DIVERGING = "RdBu_r"
#: Sequential colormap for non-negative activations (after ReLU, pooling, softmax).
SEQUENTIAL = "viridis"
#: Colour of the lines between tiles (no colormap above reaches pure black).
GAP_COLOUR = (0.0, 0.0, 0.0, 1.0)
GAP = 2
#: A tile is enlarged to at least this many pixels on its longer side ...
TARGET_TILE = 40
#: ... as long as the whole mosaic stays within this many pixels on its longer side.
MAX_MOSAIC = 1600
#: Caps on what one picture shows (the title says when a layer has more).
MAX_MAPS = 256
MAX_FILTER_ROWS = 64
MAX_FILTER_COLS = 32
#: Steps of a vector's bar chart; longer vectors show the largest |value| of each run.
MAX_BARS = 1000

_TITLE_PX = 46
_LEFT_PX = 40
_BOTTOM_PX = 14
_COLOURBAR_GAP_PX = 16
_COLOURBAR_PX = 14
_COLOURBAR_LABELS_PX = 78
_MIN_WIDTH_PX = 480


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of a grid picture are, in PNG pixels (x right, y down).

    Tile ``i`` of a one-tile-per-item grid sits in row ``i // cols``, column ``i % cols``;
    in a filters-by-input-channels grid, row = filter and column = input channel. Tiles
    are ``tile_width x tile_height`` pixels, separated and surrounded by ``gap``-pixel lines
    of :data:`GAP_COLOUR` (cells after the last tile are white); the mosaic's top-left corner
    is at (``left``, ``top``). ``zoom``
    pixels per value after ``shrink x shrink`` block means (``shrink == 1``: every value).
    """

    count: int
    rows: int
    cols: int
    tile_height: int
    tile_width: int
    gap: int
    left: int
    top: int
    zoom: int
    shrink: int = 1

    @property
    def width(self) -> int:
        return self.cols * (self.tile_width + self.gap) + self.gap

    @property
    def height(self) -> int:
        return self.rows * (self.tile_height + self.gap) + self.gap

    def tile_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) pixel box of one tile, end exclusive."""
        x0 = self.left + self.gap + col * (self.tile_width + self.gap)
        y0 = self.top + self.gap + row * (self.tile_height + self.gap)
        return x0, y0, x0 + self.tile_width, y0 + self.tile_height


def require_matplotlib() -> Any:
    """The ``matplotlib`` module, or a DecoderError that names the extra to install."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401  (the Agg backend exists)
    except ImportError:
        raise DecoderError(
            "pictures need matplotlib, the optional extra `viz`: pip install 'caffe-decoder[viz]' "
            "(the statistics alone are available without it: decoder.visualization.Visualizer)"
        ) from None
    return matplotlib


def new_figure(width_px: int, height_px: int, dpi: int = DPI) -> Any:
    """An off-screen figure of exactly ``width_px x height_px`` pixels on the Agg canvas."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def save(figure: Any, path: str | Path) -> Path:
    """Write ``figure`` as PNG at its own DPI (no cropping: tile positions stay exact)."""
    path = Path(path)
    # zlib level 3: measured 40% less encoding time than the default (6) on these mosaics, files no larger.
    figure.savefig(path, dpi=figure.dpi, format="png", metadata={"Software": None}, pil_kwargs={"compress_level": 3})
    return path


# --------------------------------------------------------------------------- filters


def filter_figure(bank: FilterBank) -> tuple[Any, TileGrid]:
    """The filters of one Convolution layer as a grid of tiles with a colourbar.

    Colour (one RGB tile per filter) when the layer reads the 3-channel image: channels
    in R, G, B order, so a BGR net's filters are flipped for display (the title says so);
    each channel maps -scale .. +scale onto 0 .. 255, grey is 0. One-channel filters: one
    tile per filter. Deeper layers: one tile per (filter, input channel), rows = filters.
    Every tile of a layer shares one symmetric scale (the largest |weight|), so weak
    filters look weak: that is information, not a rendering problem.
    """
    scale = bank.scale or 1.0
    out, inputs, kh, kw = bank.weights.shape
    matplotlib = require_matplotlib()
    if bank.in_colour:
        tiles = np.clip(0.5 + 0.5 * bank.rgb() / scale, 0.0, 1.0)
        cols = math.ceil(math.sqrt(out))
        cells = _cells(tiles, cols)
        norm, cmap = matplotlib.colors.Normalize(-scale, scale), matplotlib.colormaps["gray"]
        note = f"colour, shown R,G,B (the net sees {bank.input_order}; channels flipped for display)"
        if bank.input_order == "RGB":
            note = "colour, shown R,G,B (the net's own channel order)"
        colourbar_label = "weight, each channel"
        shape_text = f"{out} filters {kh}x{kw}x3"
        rows_label = None
    else:
        norm, cmap = matplotlib.colors.Normalize(-scale, scale), matplotlib.colormaps[DIVERGING]
        colourbar_label = "weight (0 = white)"
        if inputs == 1:
            cols = math.ceil(math.sqrt(out))
            cells = _cells(bank.weights[:, 0], cols)
            note = "one tile per filter"
            shape_text = f"{out} filters {kh}x{kw}"
            rows_label = None
        else:
            shown_rows, shown_cols = min(out, MAX_FILTER_ROWS), min(inputs, MAX_FILTER_COLS)
            cells = [[bank.weights[r, c] for c in range(shown_cols)] for r in range(shown_rows)]
            note = "rows: filters, columns: input channels"
            if (shown_rows, shown_cols) != (out, inputs):
                note += f"; first {shown_rows} of {out} filters x {shown_cols} of {inputs} channels"
            shape_text = f"{out} filters {kh}x{kw} over {inputs} channels" + (
                f" (group {bank.group})" if bank.group > 1 else ""
            )
            rows_label = "filter"
    title = f"{bank.layer}: {shape_text}"
    subtitle = f"{note}; scale ±{scale:.3g}"
    return _grid_figure(cells, (kh, kw), norm, cmap, title, subtitle, colourbar_label, rows_label)


# --------------------------------------------------------------------------- activations


def is_map(values: np.ndarray) -> bool:
    """Whether a blob is drawn as maps (N, C, H, W with H*W > 1) rather than as a vector."""
    return values.ndim == 4 and values.shape[2] * values.shape[3] > 1


def activation_figure(
    blob: Blob, labels: tuple[str, ...] = (), max_maps: int = MAX_MAPS
) -> tuple[Any, TileGrid | None]:
    """One layer top for the first image: a tile per channel (the first ``max_maps``), or a bar chart for vectors."""
    values = np.asarray(blob.values[0], dtype=np.float64)
    if not is_map(blob.values):
        return _vector_figure(blob, values.reshape(-1), labels), None
    matplotlib = require_matplotlib()
    channels, height, width = values.shape
    shown = values[:max_maps]
    cols = math.ceil(math.sqrt(len(shown)))
    shrink = max(1, math.ceil(cols * (max(height, width) + GAP) / MAX_MOSAIC))
    if shrink > 1:
        shown = _block_mean(shown, shrink)
    finite = shown[np.isfinite(shown)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 0.0
    if low >= 0:
        norm, cmap, scale_text = matplotlib.colors.Normalize(0.0, high or 1.0), SEQUENTIAL, f"0 .. {high:.3g}"
    else:
        bound = max(abs(low), abs(high)) or 1.0
        norm, cmap, scale_text = matplotlib.colors.Normalize(-bound, bound), DIVERGING, f"±{bound:.3g}, 0 = white"
    title = f"{blob.layer} ({blob.type}): {channels} maps {height}x{width}"
    notes = [f"top {blob.top!r}", scale_text]
    if len(shown) < channels:
        notes.append(f"first {len(shown)} of {channels} channels")
    if shrink > 1:
        notes.append(f"{shrink}x{shrink} block means")
    figure, grid = _grid_figure(
        _cells(shown, cols),
        shown.shape[1:],
        norm,
        matplotlib.colormaps[cmap].with_extremes(bad="magenta"),
        title,
        "; ".join(notes),
        "activation",
        None,
        shrink=shrink,
    )
    return figure, grid


def _bucketed(values: np.ndarray, buckets: int) -> tuple[np.ndarray, int]:
    """The value of largest magnitude in each run of ``ceil(size / buckets)`` values, and the run length."""
    per = max(1, math.ceil(values.size / buckets))
    if per == 1:
        return values, 1
    padded = np.zeros(math.ceil(values.size / per) * per)
    padded[: values.size] = values
    runs = padded.reshape(-1, per)
    return runs[np.arange(len(runs)), np.abs(runs).argmax(axis=1)], per


def _vector_figure(blob: Blob, values: np.ndarray, labels: tuple[str, ...]) -> Any:
    figure = new_figure(640, 240)
    axes = figure.add_axes((0.09, 0.2, 0.88, 0.62))
    positions = np.arange(values.size)
    # One step patch instead of a Rectangle per unit (bar() costs seconds for a 500-unit layer), and at
    # most MAX_BARS steps: a 12,000-value detector output would cost seconds even as one patch.
    finite = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    shown, per = _bucketed(finite, MAX_BARS)
    axes.stairs(shown, np.arange(shown.size + 1) * per - 0.5, baseline=0.0, fill=True, color="#3b6ea8")
    axes.axhline(0.0, color="black", linewidth=0.5)
    axes.set_xlim(-0.5, values.size - 0.5)
    if len(labels) == values.size <= 20:
        axes.set_xticks(positions, labels, fontsize=11)
    axes.set_xlabel("unit" if len(labels) != values.size else "class", fontsize=11)
    axes.tick_params(labelsize=10)
    bucketed = f"; largest |value| of each {per}" if per > 1 else ""
    figure.suptitle(f"{blob.layer} ({blob.type}): {values.size} values, top {blob.top!r}{bucketed}", fontsize=13)
    return figure


# --------------------------------------------------------------------------- input


def input_figure(blob: Blob, spec: PreprocessSpec) -> Any:
    """The image as loaded and resized, then each channel of the blob the network receives.

    The blob is shown as it is: de-meaned (and scaled), on a diverging colormap centred at
    0 with a colourbar, one panel per channel in the network's order (B, G, R for a DIGITS
    colour model). The left panel undoes the mean and scale to show the pixels it came from.
    """
    matplotlib = require_matplotlib()
    values = np.asarray(blob.values[0], dtype=np.float64)
    channels = values.shape[0]
    pixels = values / (spec.scale or 1.0)
    if spec.mean is not None:
        pixels = pixels + (spec.mean if spec.mean.ndim == 3 else spec.mean.reshape(-1, 1, 1))
    pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    names = ["B", "G", "R"] if channels == 3 and spec.channel_order == "BGR" else ["R", "G", "B"]
    if channels == 1:
        names = ["gray"]
    panels, side, spacing, top = 1 + channels, 220, 24, 64
    width = 16 + panels * (side + spacing) + _COLOURBAR_PX + _COLOURBAR_LABELS_PX
    height = top + side + 16
    figure = new_figure(width, height)

    def box(x: float, w: float) -> tuple[float, float, float, float]:
        return (x / width, 16 / height, w / width, side / height)

    axes = [figure.add_axes(box(16 + i * (side + spacing), side)) for i in range(panels)]
    if channels == 3:
        rgb = pixels[::-1] if spec.channel_order == "BGR" else pixels
        axes[0].imshow(rgb.transpose(1, 2, 0), interpolation="nearest")
    else:
        axes[0].imshow(pixels[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes[0].set_title("pixels before the mean", fontsize=12)
    bound = float(np.abs(values[np.isfinite(values)]).max()) if np.isfinite(values).any() else 1.0
    norm = matplotlib.colors.Normalize(-(bound or 1.0), bound or 1.0)
    image = None
    for index in range(channels):
        image = axes[index + 1].imshow(values[index], cmap=DIVERGING, norm=norm, interpolation="nearest")
        axes[index + 1].set_title(f"network input, {names[index]}", fontsize=12)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    colourbar_axes = figure.add_axes(box(16 + panels * (side + spacing), _COLOURBAR_PX))
    figure.colorbar(image, cax=colourbar_axes).ax.tick_params(labelsize=10)
    mean_text = {"image": "minus the mean image", "pixel": "minus the mean pixel", "none": "no mean subtracted"}
    scale_text = f", x{spec.scale:g}" if spec.scale != 1.0 else ""
    figure.suptitle(
        f"input {spec.channels}x{spec.height}x{spec.width} ({spec.resize_mode}), {mean_text[spec.mean_kind]}"
        f"{scale_text}; 0 = white",
        fontsize=13,
        x=8 / width,
        y=1 - 8 / height,
        ha="left",
        va="top",
    )
    return figure


# --------------------------------------------------------------------------- histograms


def histogram_figure(stats: LayerStats) -> Any:
    """The distribution of a blob's finite values (log counts: a spike at 0 must not hide the rest)."""
    figure = new_figure(480, 220)
    axes = figure.add_axes((0.13, 0.2, 0.83, 0.6))
    counts = np.asarray(stats.histogram_counts)
    if counts.size:
        axes.stairs(counts, np.asarray(stats.histogram_edges), fill=True, color="#3b6ea8")
        if counts.max() > 0:
            axes.set_yscale("log")
    axes.set_ylabel("count (log)", fontsize=10)
    axes.tick_params(labelsize=9)
    figure.suptitle(
        f"{stats.layer} {stats.top!r}: mean {stats.mean:.3g}, std {stats.std:.3g}, "
        f"{100 * stats.zero_fraction:.1f}% zeros",
        fontsize=11,
    )
    return figure


# --------------------------------------------------------------------------- grid machinery


def _cells(tiles: np.ndarray, cols: int) -> list[list[np.ndarray | None]]:
    """Tiles in reading order on a ``cols``-wide grid; the last row is padded with ``None``."""
    rows = math.ceil(len(tiles) / cols)
    return [[tiles[r * cols + c] if r * cols + c < len(tiles) else None for c in range(cols)] for r in range(rows)]


def _block_mean(maps: np.ndarray, k: int) -> np.ndarray:
    """``k x k`` block means of (C, H, W) maps; partial border blocks average what they have."""
    channels, height, width = maps.shape
    padded = np.full((channels, math.ceil(height / k) * k, math.ceil(width / k) * k), np.nan)
    padded[:, :height, :width] = maps
    blocks = padded.reshape(channels, padded.shape[1] // k, k, padded.shape[2] // k, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN block stays NaN, as it should
        return np.nanmean(blocks, axis=(2, 4))


def _colour_scale(figure: Any, norm: Any, cmap: Any, label: str, x: int, top: int, height: int) -> None:
    """A colour strip with its end and middle values, drawn as an image and three texts.

    A matplotlib colourbar would do the same with an Axes, whose tick layout costs more
    than the whole tile mosaic; pictures are drawn by the dozen, so the strip is plain.
    """
    width_px, height_px = figure.bbox.width, figure.bbox.height
    levels = np.linspace(norm.vmax, norm.vmin, height)
    strip = np.repeat(np.asarray(cmap(norm(levels)))[:, None, :], _COLOURBAR_PX, axis=1)
    figure.figimage(strip, xo=x, yo=height_px - top - height, origin="upper")
    for value, y in ((norm.vmax, top), ((norm.vmax + norm.vmin) / 2, top + height / 2), (norm.vmin, top + height)):
        figure.text((x + _COLOURBAR_PX + 4) / width_px, 1 - y / height_px, f"{value:.3g}", fontsize=10, va="center")
    figure.text(
        (x + _COLOURBAR_PX + _COLOURBAR_LABELS_PX - 12) / width_px,
        1 - (top + height / 2) / height_px,
        label,
        fontsize=10,
        rotation=90,
        va="center",
        ha="center",
    )


def _grid_figure(
    cells: list[list[np.ndarray | None]],
    tile_shape: tuple[int, int],
    norm: Any,
    cmap: Any,
    title: str,
    subtitle: str,
    colourbar_label: str,
    rows_label: str | None,
    shrink: int = 1,
) -> tuple[Any, TileGrid]:
    """Lay ``cells`` out pixel-exactly with ``figimage`` and add titles and a colour scale."""

    rows, cols = len(cells), len(cells[0])
    kh, kw = int(tile_shape[0]), int(tile_shape[1])
    zoom = max(1, math.ceil(TARGET_TILE / max(kh, kw)))
    while zoom > 1 and max(rows * (kh * zoom + GAP), cols * (kw * zoom + GAP)) + GAP > MAX_MOSAIC:
        zoom -= 1
    th, tw = kh * zoom, kw * zoom
    mosaic = np.empty((rows * (th + GAP) + GAP, cols * (tw + GAP) + GAP, 4))
    mosaic[...] = GAP_COLOUR
    values = np.full(mosaic.shape[:2], np.nan)  # scalar tiles, coloured in one colormap call below
    is_value = np.zeros(mosaic.shape[:2], dtype=bool)
    count = 0
    for r, row in enumerate(cells):
        for c, tile in enumerate(row):
            if tile is None:  # white, like the page, with the gaps that only it would have had
                mosaic[GAP + r * (th + GAP) : (r + 1) * (th + GAP) + GAP, GAP + c * (tw + GAP) :] = (1, 1, 1, 1)
                continue
            count += 1
            big = np.repeat(np.repeat(np.asarray(tile, dtype=np.float64), zoom, axis=0), zoom, axis=1)
            y, x = GAP + r * (th + GAP), GAP + c * (tw + GAP)
            if big.ndim == 3:  # already RGB in 0..1
                mosaic[y : y + th, x : x + tw, :3] = big
                mosaic[y : y + th, x : x + tw, 3] = 1.0
            else:
                values[y : y + th, x : x + tw] = big
                is_value[y : y + th, x : x + tw] = True
    if is_value.any():
        mosaic[is_value] = cmap(norm(np.ma.masked_invalid(values[is_value])))
    height_px, width_px = mosaic.shape[:2]
    left, top = _LEFT_PX, _TITLE_PX
    figure_width = max(_MIN_WIDTH_PX, left + width_px + _COLOURBAR_GAP_PX + _COLOURBAR_PX + _COLOURBAR_LABELS_PX)
    figure_height = max(top + height_px + _BOTTOM_PX, 160)
    figure = new_figure(figure_width, figure_height)
    figure.figimage(mosaic, xo=left, yo=figure_height - top - height_px, origin="upper")
    figure.text(6 / figure_width, 1 - 6 / figure_height, title, fontsize=13, va="top", ha="left")
    figure.text(6 / figure_width, 1 - 26 / figure_height, subtitle, fontsize=10, va="top", ha="left", color="#444")
    if rows_label is not None or rows > 1:
        step = max(1, math.ceil(rows / max(1, height_px // 14)))
        for r in range(0, rows, step):
            y = top + GAP + r * (th + GAP) + th / 2
            index = r if rows_label is not None else r * cols
            figure.text(
                (left - 4) / figure_width,
                1 - y / figure_height,
                str(index),
                fontsize=10,
                ha="right",
                va="center",
                color="#444",
            )
    _colour_scale(figure, norm, cmap, colourbar_label, left + width_px + _COLOURBAR_GAP_PX, top, max(height_px, 60))
    grid = TileGrid(count, rows, cols, th, tw, GAP, left, top, zoom, shrink)
    return figure, grid
