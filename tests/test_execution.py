"""Per-model settings (decoder.execution): small nets and large nets get different sessions, batches, pipelines.

The choices are measured in ``scripts/benchmark.py --explore``; here each rule is checked to
be applied: from the ``decoder.cost`` metadata conversion writes, the settings ONNX Runtime
really got, where inference runs in the pipeline, and the execution-provider checks.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from decoder import DecoderError, Model
from decoder.cli.main import main
from decoder.cost import COST_KEY, ModelCost
from decoder.execution import BATCH_MEMORY, MAX_BATCH_SIZE, batch_size_for, plan_for, resolve_providers
from decoder.wire import onnx_metadata
from scripts.model_zoo import write_model
from tests.test_runtime import write_images, write_tiny_model

RESNET50_LIKE = ModelCost(multiply_adds=3_858_000_000, activation_bytes=9_633_792, weight_bytes=102_653_088)
LENET_LIKE = ModelCost(multiply_adds=2_293_000, activation_bytes=57_600, weight_bytes=1_724_324)


def with_cost(path: Path, cost: ModelCost) -> Path:
    model = onnx.load(str(path))
    model.metadata_props.add(key=COST_KEY, value=cost.to_metadata()[COST_KEY])
    onnx.save(model, str(path))
    return path


def test_conversion_stores_the_cost_of_an_image(tmp_path: Path) -> None:
    files = write_model("lenet", tmp_path / "lenet")
    assert main(["convert", str(files.folder), "-o", str(tmp_path / "lenet.onnx")]) == 0
    cost = ModelCost.from_metadata(onnx_metadata(tmp_path / "lenet.onnx") or {})
    # conv1 20x24x24x25 + conv2 50x8x8x500 + ip1 800x500 + ip2 500x10 multiply-adds
    assert cost is not None and cost.multiply_adds == 288_000 + 1_600_000 + 400_000 + 5_000
    # the largest moment: conv1's output (20x24x24) while the input (28x28) is still read, float32
    assert cost.activation_bytes >= 4 * (20 * 24 * 24)
    assert 0 <= cost.weight_bytes - 4 * files.parameters <= 64  # + the Power layer's constants


def test_metadata_is_read_without_onnx_as_onnx_reads_it(tmp_path: Path) -> None:
    tiny = write_tiny_model(tmp_path)
    expected = {p.key: p.value for p in onnx.load(str(tiny.path)).metadata_props}
    assert onnx_metadata(tiny.path) == expected
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 100)
    assert onnx_metadata(tmp_path / "junk.onnx") is None
    assert ModelCost.from_metadata({COST_KEY: '{"multiply_adds": "lots"}'}) is None


def test_batch_size_is_bounded_by_activation_memory_not_only_the_input() -> None:
    small = plan_for(LENET_LIKE, 28 * 28)
    large = plan_for(RESNET50_LIKE, 3 * 224 * 224)
    assert small.batch_size == MAX_BATCH_SIZE
    # ResNet-50: 9.6 MB of activations per image; the input alone (0.6 MB) would allow 64 a batch.
    assert large.batch_size == 4
    per_image = RESNET50_LIKE.activation_bytes + (large.workers + 1) * 4 * 3 * 224 * 224
    assert large.batch_size * per_image <= BATCH_MEMORY < 2 * large.batch_size * per_image
    assert batch_size_for(ModelCost(10**9, 10**9, 0), 4 * 3 * 224 * 224, 1) == 1  # never below one


def test_small_and_large_nets_get_their_own_session_and_pipeline(tmp_path: Path) -> None:
    for name in "slp":
        (tmp_path / name).mkdir()
    small = Model.load(write_tiny_model(tmp_path / "s").path, pipeline=True)
    large = Model.load(with_cost(write_tiny_model(tmp_path / "l").path, RESNET50_LIKE), pipeline=True)
    small_options, large_options = small.session.get_session_options(), large.session.get_session_options()
    assert small_options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # ORT's default
    assert small_options.intra_op_num_threads == 1  # two workers run concurrent one-thread calls
    assert large_options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert large_options.intra_op_num_threads == 0  # ONNX Runtime's default: one per core
    assert (small.plan.workers, large.plan.workers) == (2, 1)
    # The Python API's lone calls get every core whatever the net.
    assert Model.load(write_tiny_model(tmp_path / "p").path).session.get_session_options().intra_op_num_threads == 0


@pytest.mark.parametrize("cost, in_caller", [(LENET_LIKE, False), (RESNET50_LIKE, True)])
def test_large_nets_infer_in_the_callers_thread_small_ones_in_the_workers(
    tmp_path: Path, cost: ModelCost, in_caller: bool
) -> None:
    tiny = write_tiny_model(tmp_path)
    model = Model.load(with_cost(tiny.path, cost))
    paths = write_images(tmp_path / "images", 40)
    threads: list[int] = []
    real_run = model.session.run

    def spying_run(names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        threads.append(threading.get_ident())
        return real_run(names, feeds)

    model.session.run = spying_run  # type: ignore[method-assign]
    predictions = model.predict(paths, batch_size=8)
    assert len(threads) == 5
    assert all(t == threading.get_ident() for t in threads) == in_caller
    for prediction, path in zip(predictions, paths, strict=True):
        np.testing.assert_allclose(prediction.probability, tiny.reference(path).max(), rtol=1e-5)


def test_an_absent_device_is_one_line_listing_the_available_ones(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tiny = write_tiny_model(tmp_path)
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]
    assert resolve_providers(None) == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: nothing absent to ask for")
    with pytest.raises(DecoderError, match=r"device 'cuda' is not available in this onnxruntime; available: .*cpu"):
        Model.load(tiny.path, providers="cuda")
    image = write_images(tmp_path / "images", 1)[0]
    assert main([str(image), "--model", str(tiny.path), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "available:" in err[0] and "CPUExecutionProvider" in err[0]
    assert main([str(image), "--model", str(tiny.path), "--device", "CPUExecutionProvider", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["image"] == str(image)


def test_a_large_models_optimized_graph_is_kept_and_reused_until_the_model_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DECODER_CACHE", str(cache))
    files = write_model("cifar10_quick", tmp_path / "zoo")
    path = tmp_path / "model.onnx"
    assert main(["convert", str(files.folder), "-o", str(path)]) == 0
    with_cost(path, RESNET50_LIKE)  # planned as a large net: the one kind whose graph is kept
    blob = np.random.default_rng(0).uniform(-100, 100, (3, *files.input_shape)).astype(np.float32)

    first = Model.load(path)
    assert first.cached_graph is None  # optimized from the model, and saved
    kept = list(cache.glob("*.ort.onnx"))
    assert len(kept) == 1 and kept[0].name.startswith("model-") and not list(cache.glob(".*.tmp"))
    second = Model.load(path)
    assert second.cached_graph == kept[0]
    assert second.session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    expected = first.run(blob)
    for name, values in second.run(blob).items():
        np.testing.assert_array_equal(values, expected[name])  # the same graph: the same numbers
    assert second.labels == first.labels and second.spec == first.spec  # the metadata travels with it

    # A changed model is a new entry; a damaged entry is made again; small nets are not kept.
    with_cost(path, RESNET50_LIKE)
    assert Model.load(path).cached_graph is None and len(list(cache.glob("*.ort.onnx"))) == 2
    for entry in cache.glob("*.ort.onnx"):
        entry.write_bytes(b"not a graph")
    damaged = Model.load(path)
    assert damaged.cached_graph is None
    np.testing.assert_array_equal(damaged.run(blob)[damaged.graph.score_output], expected[first.graph.score_output])
    assert Model.load(path).cached_graph is not None
    assert Model.load(write_tiny_model(tmp_path).path).cached_graph is None
    # Big weights (VGG-16 class): loading is reading them, not rewriting the graph; not kept.
    heavy = ModelCost(RESNET50_LIKE.multiply_adds, RESNET50_LIKE.activation_bytes, weight_bytes=553_000_000)
    before = sorted(cache.glob("*.ort.onnx"))
    assert Model.load(with_cost(Path(shutil.copy(path, tmp_path / "heavy.onnx")), heavy)).cached_graph is None
    assert sorted(cache.glob("*.ort.onnx")) == before

    # Off, or a folder that cannot be written: the model loads all the same, nothing is kept.
    monkeypatch.setenv("DECODER_CACHE", "off")
    assert Model.load(path).cached_graph is None
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    monkeypatch.setenv("DECODER_CACHE", str(blocked / "cache"))
    assert Model.load(path).run(blob).keys() == expected.keys()


def test_the_graph_cache_keeps_to_its_size_by_dropping_the_least_recently_used(tmp_path: Path) -> None:
    import os

    from decoder.session_cache import evict

    sizes = {"a": 400, "b": 300, "c": 200, "d": 100}
    for age, (name, size) in enumerate(sizes.items()):
        entry = tmp_path / f"{name}.ort.onnx"
        entry.write_bytes(b"x" * size)
        os.utime(entry, ns=(10**18 + age * 10**9, 10**18 + age * 10**9))  # a oldest ... d newest
    (tmp_path / "notes.txt").write_bytes(b"x" * 1000)  # not ours: never counted, never removed
    evict(tmp_path, keep=tmp_path / "a.ort.onnx", limit=650)
    # a is kept (just written), b and c go (oldest first) until 400 + 100 <= 650
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ort.onnx", "d.ort.onnx", "notes.txt"]


def test_a_broken_large_model_is_one_error_and_leaves_no_cache_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DECODER_CACHE", str(cache))
    path = with_cost(write_tiny_model(tmp_path).path, RESNET50_LIKE)
    model = onnx.load(str(path))
    model.graph.node.append(onnx.helper.make_node("NoSuchOperator", [model.graph.output[0].name], ["extra"]))
    onnx.save(model, str(path))
    with pytest.raises(DecoderError, match="not a loadable ONNX model"):
        Model.load(path)
    assert not cache.exists() or list(cache.iterdir()) == []
