"""`decode visualize`: filters, activations, statistics, the index page.

Checked against things our drawing code does not produce itself: the filters against
OpenCV's Caffe reader (the DIGITS LeNet) or the weights we wrote (a colour net), the
statistics against numpy on :class:`LayerRunner`'s outputs, the tiles by measuring the
PNG, the page by rendering it in headless Chromium when installed.
"""

from __future__ import annotations

import html.parser
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from decoder.caffe_proto import caffe_pb2
from decoder.cli.main import main
from decoder.errors import DecoderError
from decoder.intermediates import LayerRunner
from decoder.runtime import Model

pytest.importorskip("matplotlib", reason="the pictures need the optional extra caffe-decoder[viz]")

from decoder.visualization import Visualizer, blob_statistics, write_report
from decoder.visualization.figures import GAP_COLOUR
from decoder.visualization.report import ACTIVATION_LAYERS, CHANNELS, FILTER_LAYERS, chosen
from tests.caffe_nets import NetBuilder

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DIGITS_DIR = SHARED / "models" / "digits_lenet_mnist_eagleeye"
DIGITS_ARCHIVE = DIGITS_DIR / "digits_model.tar.gz"
SHIPPED_LENET = REPO / "converted_models" / "lenet.onnx"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BLACK = tuple(round(255 * c) for c in GAP_COLOUR[:3])


# --------------------------------------------------------------------------- fixtures


def digit_image(folder: Path, text: str = "7") -> Path:
    """A dark digit on white, the polarity of DIGITS's MNIST LeNet, drawn here (no shared files)."""
    image = Image.new("L", (28, 28), 255)
    ImageDraw.Draw(image).text((7, 2), text, fill=0, font=ImageFont.load_default(size=22))
    path = folder / f"digit_{text}.png"
    image.save(path)
    return path


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not DIGITS_ARCHIVE.is_file():
        pytest.skip(f"shared DIGITS LeNet not present: {DIGITS_ARCHIVE}")
    from decoder.conversion import convert
    from decoder.sources import open_sources

    output = tmp_path_factory.mktemp("digits") / "digits_lenet.onnx"
    with open_sources(DIGITS_ARCHIVE) as sources:
        convert(sources, output)
    return output


@pytest.fixture(scope="module", params=["digits", "shipped"])
def lenet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A LeNet .onnx, one image, and the report written for it (once per module)."""
    if request.param == "digits":
        path = request.getfixturevalue("digits_onnx")
    else:
        if not SHIPPED_LENET.is_file():
            pytest.skip(f"shipped model not built yet: {SHIPPED_LENET}")
        path = SHIPPED_LENET
    folder = tmp_path_factory.mktemp(f"viz_{request.param}")
    image = digit_image(folder)
    report = write_report(path, image, folder / "out")
    return {"kind": request.param, "path": path, "image": image, "report": report}


def write_colour_net(folder: Path) -> tuple[Path, np.ndarray]:
    """A 3-channel net: conv1 (4 filters 3x3) -> ReLU -> InnerProduct(2) -> Softmax, known weights.

    Filter 0 has weights only on input channel 0, which a DIGITS net receives as BLUE (BGR);
    filter 1 only on channel 2 (RED); filters 2 and 3 are seeded noise.
    """
    rng = np.random.default_rng(3)
    weights = np.zeros((4, 3, 3, 3), np.float32)
    weights[0, 0] = 1.0
    weights[1, 2] = 1.0
    weights[2:] = rng.standard_normal((2, 3, 3, 3)).astype(np.float32) * 0.5
    fc = rng.standard_normal((2, 4 * 6 * 6)).astype(np.float32) * 0.1
    deploy = caffe_pb2.NetParameter(name="colour")
    deploy.input.append("data")
    deploy.input_shape.add().dim.extend([1, 3, 8, 8])
    trained = caffe_pb2.NetParameter(name="colour")
    specs = [
        ("conv1", "Convolution", "data", "conv1", [weights, np.zeros(4, np.float32)]),
        ("relu1", "ReLU", "conv1", "conv1", []),
        ("ip1", "InnerProduct", "conv1", "ip1", [fc, np.zeros(2, np.float32)]),
        ("prob", "Softmax", "ip1", "prob", []),
    ]
    for name, kind, bottom, top, blobs in specs:
        for net in (deploy, trained):
            layer = net.layer.add(name=name, type=kind, bottom=[bottom], top=[top])
            if kind == "Convolution":
                layer.convolution_param.num_output = 4
                layer.convolution_param.kernel_size.append(3)
            if kind == "InnerProduct":
                layer.inner_product_param.num_output = 2
            if net is trained:
                for array in blobs:
                    blob = layer.blobs.add()
                    blob.shape.dim.extend(array.shape)
                    blob.data.extend(array.ravel().tolist())
    from google.protobuf import text_format

    (folder / "deploy.prototxt").write_text(text_format.MessageToString(deploy))
    (folder / "colour.caffemodel").write_bytes(trained.SerializeToString())
    return folder, weights


@pytest.fixture(scope="module")
def colour_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    from decoder.conversion import convert
    from decoder.sources import open_sources

    folder, weights = write_colour_net(tmp_path_factory.mktemp("colour"))
    output = folder / "colour.onnx"
    with open_sources(prototxt=folder / "deploy.prototxt", weights=folder / "colour.caffemodel") as sources:
        convert(sources, output)
    return output, weights


# --------------------------------------------------------------------------- PNG measuring


def png_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def measure_tiles(picture: np.ndarray, box: tuple[int, int, int, int]) -> tuple[list[tuple[int, int]], list]:
    """Runs of non-gap rows inside ``box`` (x0, y0, x1, y1) of a PNG, and the tiles found there.

    A gap line is a row/column that is entirely the gap colour (or white, where the last row
    has no tiles); a tile is a cell between gap lines that is not entirely so, given as
    ((y0, y1), (x0, x1)) in PNG pixels.
    """
    x0, y0, x1, y1 = box
    region = picture[y0:y1, x0:x1]
    gap = np.all(region == BLACK, axis=2) | np.all(region == 255, axis=2)  # lines, or white empty cells

    def runs(is_gap_line: np.ndarray) -> list[tuple[int, int]]:
        found, start = [], None
        for i, g in enumerate(is_gap_line):
            if not g and start is None:
                start = i
            if g and start is not None:
                found.append((start, i))
                start = None
        if start is not None:
            found.append((start, len(is_gap_line)))
        return found

    row_runs, col_runs = runs(gap.all(axis=1)), runs(gap.all(axis=0))
    tiles = [
        ((y0 + r[0], y0 + r[1]), (x0 + c[0], x0 + c[1]))
        for r in row_runs
        for c in col_runs
        if not gap[r[0] : r[1], c[0] : c[1]].all()
    ]
    return row_runs, tiles


def grid_box(grid) -> tuple[int, int, int, int]:
    return grid.left, grid.top, grid.left + grid.width, grid.top + grid.height


# --------------------------------------------------------------------------- filters


def test_conv1_grid_shows_20_filters(lenet: dict) -> None:
    report = lenet["report"]
    conv1 = report.filter_banks[0]
    assert conv1.layer == "conv1"
    assert conv1.weights.shape == (20, 1, 5, 5)
    assert not conv1.in_colour  # one input channel: tiles on a diverging scale
    if lenet["kind"] == "digits":  # the weights are Caffe's own, as OpenCV reads them
        cv2 = pytest.importorskip("cv2")
        net = cv2.dnn.readNetFromCaffe(
            str(DIGITS_DIR / "deploy.prototxt"), str(DIGITS_DIR / "snapshot_iter_21120.caffemodel")
        )
        np.testing.assert_array_equal(conv1.weights, net.getParam("conv1", 0))
        np.testing.assert_array_equal(conv1.bias, net.getParam("conv1", 1).ravel())

    picture = png_rgb(report.folder / report.filters[0])
    grid = report.filter_grids[0]
    rows, tiles = measure_tiles(picture, grid_box(grid))
    assert len(tiles) == 20 == grid.count
    assert len(rows) == 4  # 5 columns x 4 rows
    sizes = {(r[1] - r[0], c[1] - c[0]) for r, c in tiles}
    assert sizes == {(5 * grid.zoom, 5 * grid.zoom)}
    assert grid.zoom >= 4  # a 5x5 kernel is enlarged, not left at 5 pixels

    # Pixel-exact: every weight is one flat zoom x zoom block, and the layer's largest |weight|
    # gets an end of the symmetric colour scale (dark red if positive, dark blue if negative).
    import matplotlib

    flat = conv1.weights[:, 0]
    index, y, x = np.unravel_index(np.abs(flat).argmax(), flat.shape)
    x0, y0, x1, y1 = grid.tile_box(index // grid.cols, index % grid.cols)
    tile = picture[y0:y1, x0:x1].astype(int)
    blocks = tile.reshape(5, grid.zoom, 5, grid.zoom, 3)
    assert np.all(blocks == blocks[:, :1, :, :1])
    end = 1.0 if flat[index, y, x] > 0 else 0.0
    expected = np.round(255 * np.asarray(matplotlib.colormaps["RdBu_r"](end)[:3]))
    assert np.abs(blocks[y, 0, x, 0] - expected).max() <= 1


def test_deeper_conv_is_filters_by_channels(lenet: dict) -> None:
    report = lenet["report"]
    conv2 = report.filter_banks[1]
    assert conv2.layer == "conv2" and conv2.weights.shape == (50, 20, 5, 5)
    rows, tiles = measure_tiles(png_rgb(report.folder / report.filters[1]), grid_box(report.filter_grids[1]))
    assert len(rows) == 50 and len(tiles) == 50 * 20


def test_first_colour_layer_is_shown_in_rgb(colour_onnx: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, weights = colour_onnx
    viz = Visualizer(path)
    bank = viz.filters[0]
    np.testing.assert_array_equal(bank.weights, weights)
    assert bank.in_colour and bank.input_order == "BGR"
    rgb = bank.rgb()
    assert rgb.shape == (4, 3, 3, 3)
    # Net channel 0 is blue: after the flip the weight sits in the B (last) display channel.
    assert rgb[0, ..., 2].min() == 1.0 and not rgb[0, ..., :2].any()
    assert rgb[1, ..., 0].min() == 1.0 and not rgb[1, ..., 1:].any()

    image = tmp_path / "colour.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(image)
    report = write_report(viz, image, tmp_path / "out")
    picture = png_rgb(report.folder / report.filters[0])
    grid = report.filter_grids[0]
    _, tiles = measure_tiles(picture, grid_box(grid))
    assert len(tiles) == 4
    blue = picture[slice(*tiles[0][0]), slice(*tiles[0][1])].reshape(-1, 3).mean(axis=0)
    red = picture[slice(*tiles[1][0]), slice(*tiles[1][1])].reshape(-1, 3).mean(axis=0)
    # Grey is 0; a filter that only weighs the net's channel 0 (blue) must look blue.
    assert blue[2] > 180 and abs(blue[0] - 128) <= 2 and abs(blue[1] - 128) <= 2
    assert red[0] > 180 and abs(red[1] - 128) <= 2 and abs(red[2] - 128) <= 2
    entry = json.loads(report.stats_json.read_text())["filters"][0]
    assert (entry["input_order"], entry["shown_order"]) == ("BGR", "RGB")


# --------------------------------------------------------------------------- activations, statistics


def test_activation_pictures_cover_every_layer(lenet: dict) -> None:
    report = lenet["report"]
    runner = LayerRunner(lenet["path"])
    expected = [(layer.name, top) for layer in runner.layers for top in layer.tops]
    seen = [(s.layer, s.top) for s in report.stats[1:]]
    assert seen == expected
    page = report.index.read_text()
    for stat, picture, grid in zip(report.stats[1:], report.activations[1:], report.activation_grids[1:], strict=True):
        assert picture is not None and (report.folder / picture).is_file()  # 9 layers: all drawn by default
        assert f'src="{picture}"' in page
        if len(stat.shape) == 4:  # maps: one tile per channel up to the default budget, counted on the PNG
            _, tiles = measure_tiles(png_rgb(report.folder / picture), grid_box(grid))
            assert len(tiles) == min(stat.shape[1], CHANNELS)
    names = [s.layer for s in report.stats]
    assert {"conv1", "pool1", "conv2", "pool2", "ip1", "ip2"} <= set(names)


def test_statistics_match_numpy(lenet: dict) -> None:
    report = lenet["report"]
    blob = Model.load(lenet["path"]).preprocess([lenet["image"]])
    outputs = LayerRunner(lenet["path"]).run_layers(blob)
    document = json.loads(report.stats_json.read_text())
    entries = document["layers"]
    assert entries[0]["type"] == "Input"
    arrays = [blob] + [array for layer in LayerRunner(lenet["path"]).layers for array in outputs[layer.name]]
    assert len(arrays) == len(entries)
    for entry, array in zip(entries, arrays, strict=True):
        values = array.astype(np.float64)
        assert entry["shape"] == list(array.shape)
        assert entry["mean"] == pytest.approx(values.mean(), rel=1e-9, abs=1e-12)
        assert entry["std"] == pytest.approx(values.std(), rel=1e-9, abs=1e-12)
        assert entry["min"] == values.min() and entry["max"] == values.max()
        assert entry["zero_fraction"] == pytest.approx(np.count_nonzero(values == 0) / values.size)
        dead = [c for c in range(array.shape[1]) if not np.any(np.take(values, c, axis=1))]
        assert entry["dead_units"] == dead
        counts, edges = np.histogram(array, bins=len(entry["histogram"]["counts"]))  # the float32 blob's
        assert entry["histogram"]["counts"] == counts.tolist()
        np.testing.assert_allclose(entry["histogram"]["edges"], edges)
        assert entry["nan_count"] == 0 and entry["inf_count"] == 0
    by_layer = {e["layer"]: e for e in entries}
    assert by_layer["conv1"]["parameters"] == 20 * 25 + 20
    assert by_layer["ip1"]["parameters"] == 800 * 500 + 500
    assert by_layer["pool1"]["parameters"] == 0
    relu = next(e for e in entries if e["type"] == "ReLU")
    assert relu["zero_fraction"] > 0  # the ReLU really clips something for this image
    assert report.forward.prediction is not None
    assert document["prediction"]["label"] == Model.load(lenet["path"]).predict(lenet["image"])[0].label


def test_blob_statistics_flags_nan_inf_and_dead_units() -> None:
    values = np.array([[[[1.0, 2.0], [3.0, np.nan]], [[0.0, 0.0], [0.0, 0.0]], [[np.inf, -2.0], [0.0, 4.0]]]])
    stats = blob_statistics(values, "layer", "Test", "top")
    finite = [1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0, -2.0, 0.0, 4.0]
    assert stats.mean == pytest.approx(np.mean(finite)) and stats.std == pytest.approx(np.std(finite))
    assert (stats.min, stats.max) == (-2.0, 4.0)
    assert stats.zero_fraction == 5 / 12
    assert (stats.nan_count, stats.inf_count, stats.units, stats.dead_units) == (1, 1, 3, (1,))
    assert stats.flags == ("1 of 3 units zero for this input", "1 NaN", "1 Inf")  # one input: not "dead"
    assert sum(stats.histogram_counts) == 10
    json.dumps(stats.to_dict(), allow_nan=False)
    empty = blob_statistics(np.full((1, 2), np.nan), "l", "T", "t")
    assert empty.to_dict()["mean"] is None and empty.nan_count == 2
    json.dumps(empty.to_dict(), allow_nan=False)


# --------------------------------------------------------------------------- page, CLI, errors


class _Images(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img" and values.get("src"):
            self.sources.append(values["src"] or "")
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")


def test_index_is_plain_and_self_contained(lenet: dict) -> None:
    report = lenet["report"]
    page = report.index.read_text()
    parser = _Images()
    parser.feed(page)
    assert sorted(parser.sources) == sorted(report.pictures)
    assert page.count("<svg ") == len(report.stats)  # every blob's histogram, inline
    for source in parser.sources + [link for link in parser.links if not link.startswith("#")]:
        assert "://" not in source and not source.startswith("/")
        assert (report.folder / source).is_file()
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (not a CI dependency)")
def test_index_renders_in_headless_chromium(lenet: dict, tmp_path: Path) -> None:
    report = lenet["report"]
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--hide-scrollbars", "--window-size=1200,1400", f"--screenshot={shot}", report.index.as_uri(),
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    picture = png_rgb(shot)
    assert picture.shape[:2] == (1400, 1200)
    assert picture.std() > 10  # not blank
    # Saturated diverging-map colours exist only inside our PNGs: the images were loaded.
    red, green, blue = (picture[..., i].astype(int) for i in range(3))
    reddish = (red > 150) & (blue < 90) & (green < 110)
    bluish = (blue > 120) & (green - red > 30)  # the map's blues, not the (grey-balanced) link text
    assert reddish.sum() > 500 and bluish.sum() > 500


def test_cli_writes_the_folder(colour_onnx: tuple[Path, np.ndarray], tmp_path: Path, capsys) -> None:
    path, _ = colour_onnx
    image = tmp_path / "in.png"
    Image.new("RGB", (20, 12), (200, 30, 40)).save(image)
    assert main(["visualize", str(image), "--model", str(path), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "index.html" in out
    document = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert [e["layer"] for e in document["layers"]] == ["data", "conv1", "relu1", "ip1", "prob"]
    assert document["filters"][0]["colour"] and document["filters"][0]["shown_order"] == "RGB"


def test_cli_errors_exit_2(colour_onnx: tuple[Path, np.ndarray], tmp_path: Path, capsys) -> None:
    path, _ = colour_onnx
    image = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(image)
    assert main(["visualize", str(image), "--model", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "o")]) == 2
    assert "missing.onnx" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["visualize", str(image), "--model", str(path), "-o", str(tmp_path / "file")]) == 2
    assert main(["visualize", str(tmp_path / "nope.png"), "--model", str(path), "-o", str(tmp_path / "o")]) == 2
    assert "nope.png" in capsys.readouterr().err


def test_missing_matplotlib_names_the_extra(
    colour_onnx: tuple[Path, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    path, _ = colour_onnx
    image = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(image)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(DecoderError, match=r"decoder\[viz\]"):
        write_report(path, image, tmp_path / "out")
    assert main(["visualize", str(image), "--model", str(path), "-o", str(tmp_path / "out")]) == 2
    assert "decoder[viz]" in capsys.readouterr().err
    # The numbers need no matplotlib.
    viz = Visualizer(path)
    assert len(viz.statistics(viz.forward(image))) == 5


# --------------------------------------------------------------------------- bounded output, wording


def write_deep_net(folder: Path, convolutions: int = 10) -> Path:
    """``convolutions`` x (3x3 conv, 20 channels + in-place ReLU) on a 3x12x12 input, converted."""
    from decoder.conversion import convert
    from decoder.sources import open_sources

    net = NetBuilder("deep", seed=2)
    x = net.input("data", (1, 3, 12, 12))
    for index in range(convolutions):
        x = net.layer("Convolution", x, name=f"conv{index}", blobs=[(20, 3 if index == 0 else 20, 3, 3), (20,)],
                      convolution_param={"num_output": 20, "kernel_size": [3], "pad": [1]})  # fmt: skip
        net.layer("ReLU", x, x, name=f"relu{index}")
    files = net.write(folder, "deep")
    with open_sources(prototxt=files.prototxt, weights=files.caffemodel) as sources:
        convert(sources, folder / "deep.onnx")
    return folder / "deep.onnx"


def test_default_draws_a_bounded_selection_and_every_statistic(tmp_path: Path) -> None:
    model = write_deep_net(tmp_path)
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(image)
    report = write_report(model, image, tmp_path / "out")
    tops = len(report.stats) - 1
    assert tops == 20 > ACTIVATION_LAYERS
    drawn = [i for i, a in enumerate(report.activations) if a]
    assert len(drawn) == ACTIVATION_LAYERS and drawn[0] == 1 and drawn[-1] == tops  # first and last layer
    assert len(report.filters) == FILTER_LAYERS and report.filter_layers == 10
    assert len(report.pictures) == 1 + FILTER_LAYERS + ACTIVATION_LAYERS
    written = sorted(str(p.relative_to(report.folder)) for p in report.folder.rglob("*.png"))
    assert written == sorted(report.pictures)
    for index in drawn:  # 20 channels each, CHANNELS tiles drawn
        _, tiles = measure_tiles(
            png_rgb(report.folder / report.activations[index]), grid_box(report.activation_grids[index])
        )
        assert len(tiles) == CHANNELS
    document = json.loads(report.stats_json.read_text())
    assert len(document["layers"]) == 21 and all("mean" in entry for entry in document["layers"])
    assert document["drawn"] == {
        "all": False, "activation_pictures": ACTIVATION_LAYERS, "layer_tops": 20, "channels_per_picture": CHANNELS,
        "filter_pictures": FILTER_LAYERS, "convolution_layers": 10,
    }  # fmt: skip
    page = report.index.read_text()
    assert page.count("<tr") == 1 + 21 and "--all" in page


def test_chosen_spreads_evenly_and_keeps_both_ends() -> None:
    assert chosen(5, 16) == [0, 1, 2, 3, 4]
    picked = chosen(228, 16)
    assert len(picked) == 16 and picked[0] == 0 and picked[-1] == 227
    assert max(np.diff(picked)) - min(np.diff(picked)) <= 1


def net_with_a_silent_channel(folder: Path) -> Path:
    """conv (3 filters, the third with bias -1e4) -> ReLU -> InnerProduct -> Softmax: channel 2 is always 0."""
    from decoder.conversion import convert
    from decoder.sources import open_sources

    net = NetBuilder("silent", seed=5)
    x = net.input("data", (1, 3, 6, 6))
    rng = np.random.default_rng(5)
    x = net.layer("Convolution", x, name="conv", convolution_param={"num_output": 3, "kernel_size": [3]},
                  blobs=[rng.standard_normal((3, 3, 3, 3)).astype(np.float32) * 0.01,
                         np.array([100.0, 100.0, -1e4], np.float32)])  # fmt: skip
    net.layer("ReLU", x, x, name="relu")
    x = net.layer("InnerProduct", x, name="ip", inner_product_param={"num_output": 2}, blobs=[(2, 48), (2,)])
    net.layer("Softmax", x, name="prob")
    files = net.write(folder, "silent")
    with open_sources(prototxt=files.prototxt, weights=files.caffemodel) as sources:
        convert(sources, folder / "silent.onnx")
    return folder / "silent.onnx"


def test_zero_units_are_dead_only_over_several_inputs(tmp_path: Path, capsys) -> None:
    model = net_with_a_silent_channel(tmp_path)
    rng = np.random.default_rng(0)
    images = []
    for index in range(8):
        images.append(tmp_path / f"in{index}.png")
        Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(images[-1])
    assert main(["visualize", str(images[0]), "--model", str(model), "-o", str(tmp_path / "one")]) == 0
    out = capsys.readouterr().out
    assert "relu 'conv': 1 of 3 units zero for this input" in out and "units dead" not in out
    assert main(["visualize", *map(str, images[:2]), "--model", str(model), "-o", str(tmp_path / "two")]) == 0
    out = capsys.readouterr().out
    assert "1 of 3 units zero for all 2 inputs (too few to call them dead)" in out
    assert main(["visualize", *map(str, images), "--model", str(model), "-o", str(tmp_path / "eight")]) == 0
    out = capsys.readouterr().out
    assert "relu 'conv': 1 of 3 units dead (zero for all 8 inputs)" in out
    document = json.loads((tmp_path / "eight" / "stats.json").read_text())
    relu = next(e for e in document["layers"] if e["layer"] == "relu")
    assert relu["inputs"] == 8 and relu["dead_units"] == [2]
    assert document["images"] == [str(i) for i in images]


def test_cli_all_draws_every_layer(colour_onnx: tuple[Path, np.ndarray], tmp_path: Path, capsys) -> None:
    path, _ = colour_onnx
    image = tmp_path / "in.png"
    Image.new("RGB", (8, 8), (10, 200, 30)).save(image)
    assert main(["visualize", str(image), "--model", str(path), "-o", str(tmp_path / "out"), "--all"]) == 0
    assert "(6 pictures," in capsys.readouterr().out  # input + conv1 filters + 4 layer tops
    document = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert document["drawn"]["all"] is True and document["drawn"]["channels_per_picture"] == 256
