"""`decode serve` in-process: DIGITS's REST API, the /v1 API, health and metrics, through Starlette's TestClient.

Every expected answer is computed by the core (``Model.predict``, `decode --json`) on the
same files, so these tests pin the server to what the command line says, in DIGITS's shapes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("multipart")

with warnings.catch_warnings():  # Starlette >= 1.x suggests httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from decoder import Model
from decoder.cli.main import main
from decoder.serve import Settings, create_app, load_models
from decoder.serve.batcher import Batcher
from decoder.serve.images import Upload
from decoder.serve.metrics import Metrics

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]
LENET = REPO / "converted_models" / "lenet.onnx"
SAMPLES = REPO / "converted_models" / "samples"
JOB = "20160809-163916-d65f"
CLASSIFY_ONE = "/models/images/classification/classify_one.json"
CLASSIFY_MANY = "/models/images/classification/classify_many.json"


def sample(digit: int) -> Path:
    return SAMPLES / f"digit_{digit}.png"


@pytest.fixture(scope="module")
def image_root() -> Iterator[Path]:
    """A folder the server may read: the samples in per-label folders (DIGITS's dataset layout)."""
    root = Path(tempfile.mkdtemp(prefix="serve-root-")).resolve()
    for path in sorted(SAMPLES.glob("digit_*.png")):
        label = path.stem.split("_")[1]
        (root / label).mkdir()
        shutil.copy(path, root / label / path.name)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def client(image_root: Path) -> Iterator[TestClient]:
    app = create_app(load_models([LENET], {"lenet": JOB}), Settings(image_roots=(image_root,)))
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def reference() -> Model:
    return Model.load(LENET)


def digits_answer(model: Model, path: Path) -> list[list[object]]:
    """What DIGITS answers for this image: top 5 as [label, round(100 p, 2)], from the core's probabilities."""
    probabilities = model.probabilities(model.preprocess([path]))[0]
    order = np.argsort(-probabilities, kind="stable")[:5]
    return [[model.labels[i], round(100.0 * float(probabilities[i]), 2)] for i in order]


def upload(path: Path, field: str = "image_file") -> dict[str, tuple[str, bytes, str]]:
    return upload_bytes(path.name, path.read_bytes(), field)


def upload_bytes(name: str, data: bytes, field: str = "image_file") -> dict[str, tuple[str, bytes, str]]:
    return {field: (name, data, "image/png")}


# --------------------------------------------------------------------------- DIGITS's API


@pytest.mark.parametrize("how", ["form", "query", "stem"])
def test_classify_one_answers_like_digits(client: TestClient, reference: Model, how: str) -> None:
    path = sample(7)
    if how == "form":
        response = client.post(CLASSIFY_ONE, data={"job_id": JOB}, files=upload(path))
    else:
        response = client.post(f"{CLASSIFY_ONE}?job_id={JOB if how == 'query' else 'lenet'}", files=upload(path))
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["predictions"]
    assert body["predictions"] == digits_answer(reference, path)
    assert body["predictions"][0][0] == "7"


@pytest.mark.parametrize(
    ("data", "files", "status", "message"),
    [
        ({}, "digit", 400, "job_id is a required field"),
        ({"job_id": "20990101-000000-beef"}, "digit", 404, "unknown job_id '20990101-000000-beef'"),
        ({"job_id": JOB}, None, 400, "must provide image_file"),
        ({"job_id": JOB}, "text", 400, "notes.png: not an image file Pillow can read"),
        ({"job_id": JOB, "image_url": "http://example.com/x.png"}, None, 403, "--allow-image-urls"),
        ({"job_id": JOB, "image_path": "/etc/passwd"}, None, 403, "outside the folders this server may read"),
    ],
)
def test_classify_one_errors_name_the_problem(
    client: TestClient, data: dict[str, str], files: str | None, status: int, message: str
) -> None:
    sent = {"digit": upload(sample(3)), "text": {"image_file": ("notes.png", b"not a picture", "image/png")}}
    response = client.post(CLASSIFY_ONE, data=data, files=sent.get(files or ""))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error["message"]
    assert error["type"] == {400: "BadRequest", 403: "Forbidden", 404: "NotFound"}[status]


def test_classify_one_image_path_below_a_root(client: TestClient, reference: Model, image_root: Path) -> None:
    path = image_root / "5" / "digit_5.png"
    response = client.post(CLASSIFY_ONE, data={"job_id": JOB, "image_path": str(path)})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == digits_answer(reference, path)


def test_classify_many_answers_like_digits(client: TestClient, reference: Model, image_root: Path) -> None:
    lines = ["0/digit_0.png 0", "3/digit_3.png", "9/missing.png 9", str(image_root / "7" / "digit_7.png") + " 7"]
    files = {"image_list": ("val.txt", "\n".join(lines).encode(), "text/plain")}
    response = client.post(CLASSIFY_MANY, data={"job_id": JOB, "image_folder": str(image_root)}, files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = {
        str(image_root / name): digits_answer(reference, image_root / name)
        for name in ("0/digit_0.png", "3/digit_3.png", "7/digit_7.png")
    }
    assert body["classifications"] == expected
    # DIGITS silently left unreadable images out; we leave them out too, and say why
    assert list(body["errors"]) == [str(image_root / "9" / "missing.png")]
    assert "no such image file" in body["errors"][str(image_root / "9" / "missing.png")]


@pytest.mark.parametrize(
    ("lines", "folder", "status", "message"),
    [
        (["/etc/hostname"], None, 403, "outside the folders this server may read"),
        (["../../../etc/hostname"], "ROOT/0", 403, "outside the folders"),
        (["digit_0.png"], None, 400, "a relative path needs image_folder"),
        (["x.png"], "/etc", 403, "image_folder"),
        (["x.png"], "ROOT/nowhere", 400, "does not exist"),
        ([], None, 400, "names no images"),
    ],
)
def test_classify_many_refuses_paths_outside_the_roots(
    client: TestClient, image_root: Path, lines: list[str], folder: str | None, status: int, message: str
) -> None:
    data = {"job_id": JOB}
    if folder:
        data["image_folder"] = folder.replace("ROOT", str(image_root))
    files = {"image_list": ("val.txt", "\n".join(lines).encode(), "text/plain")}
    response = client.post(CLASSIFY_MANY, data=data, files=files)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]


def test_a_link_out_of_the_root_is_refused(client: TestClient, image_root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    shutil.copy(sample(2), outside)
    link = image_root / "link.png"
    link.symlink_to(outside)
    try:
        files = {"image_list": ("val.txt", str(link).encode(), "text/plain")}
        response = client.post(CLASSIFY_MANY, data={"job_id": JOB}, files=files)
    finally:
        link.unlink()
    assert response.status_code == 403
    assert "link.png" in response.json()["error"]["message"]


def test_index_and_model_info(client: TestClient, reference: Model) -> None:
    index = client.get("/index.json").json()
    assert index["datasets"] == []
    assert [(m["id"], m["name"], m["status"]) for m in index["models"]] == [(JOB, "lenet", "Done")]
    for name in (JOB, "lenet"):
        info = client.get(f"/models/{name}.json").json()
        assert info["job id"] == JOB
        assert info["image dimensions"] == [reference.spec.height, reference.spec.width, reference.spec.channels]
        assert info["labels"] == list(reference.labels)
    missing = client.get("/models/nope.json")
    assert missing.status_code == 404
    assert "unknown job_id 'nope'" in missing.json()["error"]["message"]


# --------------------------------------------------------------------------- /v1 API


def test_predict_returns_decode_json_objects(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    paths = [sample(0), sample(9), sample(2)]
    assert main([*map(str, paths), "--model", str(LENET), "--json", "--top-k", "3"]) == 0
    expected = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    files = [("image", (p.name, p.read_bytes(), "image/png")) for p in paths]
    response = client.post("/v1/models/lenet/predict?top_k=3", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    for row in expected:
        row["image"] = Path(row["image"]).name
    assert body == {"model": "lenet", "predictions": expected, "errors": []}


def test_predict_raw_body_and_partial_failures(client: TestClient) -> None:
    raw = client.post(
        f"/v1/models/{JOB}/predict", content=sample(5).read_bytes(), headers={"content-type": "image/png"}
    )
    assert raw.status_code == 200
    assert raw.json()["predictions"][0]["label"] == "5"
    files = [
        ("image", ("a.png", sample(7).read_bytes())),
        ("image", ("b.png", b"\x89PNG broken")),
        ("image", ("c.png", sample(3).read_bytes())),
    ]
    mixed = client.post("/v1/models/lenet/predict", files=files).json()
    assert [p["label"] for p in mixed["predictions"]] == ["7", "3"]
    assert [(e["image"], e["position"]) for e in mixed["errors"]] == [("b.png", 1)]
    assert "b.png:" in mixed["errors"][0]["error"]
    only_bad = client.post("/v1/models/lenet/predict", files=[files[1]])
    assert only_bad.status_code == 400
    assert "b.png" in only_bad.json()["error"]["message"]
    assert client.post("/v1/models/lenet/predict?top_k=0", files=[files[0]]).status_code == 400
    assert client.post("/v1/models/resnet/predict", files=[files[0]]).status_code == 404


def test_health_metrics_and_unknown_pages(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "models": ["lenet"]}
    client.post(CLASSIFY_ONE, data={"job_id": JOB}, files=upload(sample(7)))
    text = client.get("/metrics").text
    assert 'decode_requests_total{endpoint="classify_one",status="200"}' in text
    assert "decode_batch_size_count" in text and "decode_request_seconds_bucket" in text
    assert client.get("/nowhere").json()["error"]["type"] == "NotFound"
    assert client.get(CLASSIFY_ONE).status_code == 405
    page = client.get("/")
    assert page.status_code == 200 and "decode serve" in page.text
    assert client.get("/static/app.js").status_code == 200


# --------------------------------------------------------------------------- batching


def test_requests_arriving_together_share_one_model_call(reference: Model) -> None:
    """32 concurrent requests (one broken) -> one ONNX Runtime call; the broken one alone fails."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [sample(d) for d in (0, 2, 3, 5, 7, 9)] * 5 + [sample(7)]
    expected = reference.probabilities(reference.preprocess(paths))

    async def scenario() -> tuple[list[object], int]:
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(Model.load(LENET, threads=1), pool, Metrics(), max_batch=64)
            uploads = [Upload(p.name, p.read_bytes()) for p in paths]
            uploads[4] = Upload("broken.png", b"GIF89a")
            outcomes = await asyncio.gather(*(batcher.classify([u]) for u in uploads))
            await batcher.close()
            return [o[0] for o in outcomes], batcher.calls

    outcomes, calls = asyncio.run(scenario())
    assert calls == 1
    for index, outcome in enumerate(outcomes):
        if index == 4:
            assert "broken.png" in str(outcome)
        else:
            np.testing.assert_allclose(outcome, expected[index], rtol=1e-6)


def test_uploads_stay_in_memory_and_the_private_folder_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3 MB upload (Starlette would spool it to a temporary file past 1 MB) never reaches the disk."""

    def no_disk(*args: object, **kwargs: object) -> object:
        raise AssertionError("an upload was written to a temporary file")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_disk)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_disk)
    app = create_app(load_models([LENET]))
    state = app.state.server
    big = sample(7).read_bytes() + b"\0" * 3_000_000  # a PNG with trailing bytes: still the digit
    with TestClient(app) as client:
        assert state.temp.stat().st_mode & 0o777 == 0o700
        response = client.post(f"{CLASSIFY_ONE}?job_id=lenet", files=upload_bytes("big.png", big))
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0][0] == "7"
    assert not state.temp.exists()


def test_pictures_without_matplotlib_say_what_to_install(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    response = client.post("/v1/models/lenet/visualize", files={"image": ("d.png", sample(7).read_bytes())})
    assert response.status_code == 501
    assert response.json()["error"]["message"] == "the pictures need matplotlib: pip install 'caffe-decoder[viz]'"


@pytest.mark.shared
def test_genuine_digits_lenet_under_its_job_id(tmp_path: Path) -> None:
    """The real DIGITS LeNet (job 20160809-163916-d65f), converted from its job folder, answers DIGITS's curl.

    The job id comes from the folder's name, as in a DIGITS jobs directory; the answers on 20
    MNIST test digits (DIGITS's polarity: dark on white) are the core's, in DIGITS's shape.
    """
    import io

    from PIL import Image

    from decoder.conversion import convert
    from decoder.sources import open_sources
    from tests.shared_data import DIGITS_LENET, mnist_test_set, require

    job_folder = tmp_path / JOB
    job_folder.mkdir()
    for name in (
        "deploy.prototxt",
        "snapshot_iter_21120.caffemodel",
        "mean.binaryproto",
        "labels.txt",
        "train_val.prototxt",
    ):
        shutil.copy(require(DIGITS_LENET / name), job_folder / name)
    with open_sources(job_folder) as sources:
        convert(sources, tmp_path / "digits_lenet.onnx")
    model = Model.load(tmp_path / "digits_lenet.onnx")
    images, labels = mnist_test_set()
    app = create_app(load_models([tmp_path / "digits_lenet.onnx"]))
    right = 0
    with TestClient(app) as client:
        for image, label in zip(images[:20], labels[:20], strict=True):
            buffer = io.BytesIO()
            Image.fromarray(255 - image).save(buffer, format="PNG")
            response = client.post(
                f"{CLASSIFY_ONE}?job_id={JOB}", files={"image_file": ("d.png", buffer.getvalue(), "image/png")}
            )
            assert response.status_code == 200, response.text
            probabilities = model.probabilities(model.preprocess([255 - image]))[0]
            order = np.argsort(-probabilities, kind="stable")[:5]
            expected = [[model.labels[i], round(100.0 * float(probabilities[i]), 2)] for i in order]
            assert response.json() == {"predictions": expected}
            right += expected[0][0] == str(label)
    assert right >= 19  # the genuine model is ~99% right on MNIST


@pytest.fixture(scope="module")
def web_server() -> Iterator[str]:
    """A local HTTP server: /digit_7.png, /big.png (300 KB), /to-file (a redirect to file:///etc/passwd)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/to-file":
                self.send_response(302)
                self.send_header("Location", "file:///etc/passwd")
                self.end_headers()
                return
            body = {"/digit_7.png": sample(7).read_bytes(), "/big.png": b"\0" * 300_000}.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(
    ("path", "status", "answer"),
    [
        ("/digit_7.png", 200, "7"),
        ("/big.png", 400, "over the limit of 200,000 bytes"),
        ("/to-file", 400, "Redirection to url 'file:///etc/passwd' is not allowed"),
        ("/nothing.png", 400, "the server answered 404"),
    ],
)
def test_image_urls_when_allowed(web_server: str, path: str, status: int, answer: str) -> None:
    app = create_app(load_models([LENET]), Settings(allow_image_urls=True, max_upload=200_000))
    with TestClient(app) as client:
        response = client.post(f"{CLASSIFY_ONE}?job_id=lenet", data={"image_url": web_server + path})
        assert response.status_code == status, response.text
        body = response.json()
        if status == 200:
            assert body["predictions"][0][0] == answer
        else:
            assert body["error"]["message"].startswith(f"{web_server}{path}: ")
            assert answer in body["error"]["message"]
        ftp = client.post(f"{CLASSIFY_ONE}?job_id=lenet", data={"image_url": "ftp://example.com/x.png"})
        assert ftp.status_code == 400 and "only http:// and https://" in ftp.json()["error"]["message"]


def test_serve_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_uvicorn(name: str, *args: object, **kwargs: object) -> object:
        if name.split(".")[0] == "uvicorn":
            raise ImportError("No module named 'uvicorn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvicorn)
    assert main(["serve", str(LENET)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("decode: error: decode serve needs the serve extra: pip install 'caffe-decoder[serve]'")
    assert err.count("\n") == 1


def test_served_models_get_the_threads_their_size_wants_and_the_device_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import onnxruntime as ort

    from tests.test_execution import RESNET50_LIKE, with_cost

    large_path = with_cost(Path(shutil.copy(LENET, tmp_path / "large.onnx")), RESNET50_LIKE)
    small, large = load_models([LENET, large_path])
    # LeNet: one thread per call, the event loop parses on the other core; ResNet-50 class: every core.
    assert small.model.session.get_session_options().intra_op_num_threads == 1
    assert large.model.session.get_session_options().intra_op_num_threads == 0
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: nothing absent to ask for")
    assert main(["serve", str(LENET), "--device", "cuda", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device 'cuda' is not available" in err[0] and "cpu" in err[0]
