"""Finding a model's files: DIGITS archives and job folders, plain folders, explicit files.

Also the readers of labels.txt, info.json and train_val's transform_param. Synthetic layouts
are built in tmp_path; the real DIGITS archive and prototxts come from ../shared when present.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

from decoder.errors import DecoderError
from decoder.sources import ModelSources, open_sources, read_info, read_labels, read_train_transform

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
EAGLEEYE = SHARED / "models" / "digits_lenet_mnist_eagleeye"
CIFAR_V1 = SHARED / "models" / "cifar10full_lrn_v1_everpeace"

DIGITS_FILES = {
    "deploy.prototxt": b'input: "data"\ninput_shape { dim: 1 dim: 1 dim: 28 dim: 28 }\n',
    "train_val.prototxt": b'layer { name: "d" type: "Data" transform_param { mean_file: "/srv/mean.binaryproto" } }\n',
    "solver.prototxt": b"base_lr: 0.01\n",
    "original.prototxt": b'layer { name: "d" type: "Data" }\n',
    "snapshot_iter_704.caffemodel": b"\x0a\x00weights",
    "mean.binaryproto": b"\x08\x01mean",
    "labels.txt": b"zero\none\n",
}
INFO = {"snapshot file": "snapshot_iter_704.caffemodel", "image resize mode": "squash", "framework": "caffe"}


def shared_file(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared test data not found: {path} (run with ../shared present)")
    return path


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Route tempfile into a folder of our own, to see exactly what open_sources leaves behind."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def build_archive(path: Path, files: dict[str, bytes]) -> Path:
    """An archive the way DIGITS's download view builds one (tarfile/zipfile, flat names)."""
    name = path.name
    if name.endswith(".zip"):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for member, data in files.items():
                zf.writestr(member, data)
        return path
    mode = "w:gz" if name.endswith((".tar.gz", ".tgz")) else "w:bz2" if name.endswith(".tar.bz2") else "w"
    with tarfile.open(path, mode) as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# --- DIGITS archives -------------------------------------------------------------------


@pytest.mark.shared
def test_real_digits_archive_resolves(private_tmp: Path) -> None:
    archive = shared_file(EAGLEEYE / "digits_model.tar.gz")
    with open_sources(archive) as found:
        assert found.prototxt.name == "deploy.prototxt"
        assert found.caffemodel.name == "snapshot_iter_21120.caffemodel"
        assert found.mean is not None and found.mean.name == "mean.binaryproto"
        assert found.labels is not None and read_labels(found.labels) == tuple("0123456789")
        assert found.train_val is not None and found.train_val.name == "train_val.prototxt"
        assert found.info == {}  # this DIGITS version wrote no info.json
        assert found.is_digits
        assert found.origin == str(archive)
        # The extracted files are the archive's bytes (SOURCE.txt: byte-identical to the loose copies).
        for extracted in (found.prototxt, found.caffemodel, found.mean, found.labels, found.train_val):
            assert extracted.read_bytes() == (EAGLEEYE / extracted.name).read_bytes()
        extracted_dir = found.prototxt.parent
        assert extracted_dir.is_relative_to(private_tmp)
    assert not extracted_dir.exists()
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("name", ["m.tar.gz", "m.tgz", "m.tar", "m.tar.bz2", "m.zip"])
def test_every_digits_archive_kind(tmp_path: Path, private_tmp: Path, name: str) -> None:
    files = {**DIGITS_FILES, "info.json": json.dumps(INFO).encode()}
    archive = build_archive(tmp_path / name, files)
    with open_sources(archive) as found:
        assert found.info == INFO
        assert found.is_digits
        assert {
            "prototxt": found.prototxt.name,
            "caffemodel": found.caffemodel.name,
            "train_val": found.train_val and found.train_val.name,
            "mean": found.mean and found.mean.name,
            "labels": found.labels and found.labels.name,
        } == {
            "prototxt": "deploy.prototxt",
            "caffemodel": "snapshot_iter_704.caffemodel",
            "train_val": "train_val.prototxt",
            "mean": "mean.binaryproto",
            "labels": "labels.txt",
        }
        assert found.caffemodel.read_bytes() == DIGITS_FILES["snapshot_iter_704.caffemodel"]
    assert list(private_tmp.iterdir()) == []


def test_archive_with_one_top_level_folder(tmp_path: Path, private_tmp: Path) -> None:
    archive = build_archive(tmp_path / "m.tgz", {f"20160809-163916-d65f/{k}": v for k, v in DIGITS_FILES.items()})
    with open_sources(archive) as found:
        assert found.prototxt.parent.name == "20160809-163916-d65f"
        assert found.caffemodel.name == "snapshot_iter_704.caffemodel"
        assert found.labels is not None and found.labels.parent == found.prototxt.parent


def test_archive_with_labels_beside_the_model_folder(tmp_path: Path, private_tmp: Path) -> None:
    files = {"model/deploy.prototxt": b"", "model/w.caffemodel": b"", "labels.txt": b"a\nb\n"}
    with open_sources(build_archive(tmp_path / "m.zip", files)) as found:
        assert found.labels is not None and read_labels(found.labels) == ("a", "b")


def test_archive_with_models_in_two_folders_is_ambiguous(tmp_path: Path, private_tmp: Path) -> None:
    files = {"a/deploy.prototxt": b"", "a/w.caffemodel": b"", "b/deploy.prototxt": b"", "b/w.caffemodel": b""}
    archive = build_archive(tmp_path / "two.tar", files)
    with pytest.raises(DecoderError, match=r"several folders \(a, b\)") as caught, open_sources(archive):
        pass
    assert str(archive) in str(caught.value)
    assert list(private_tmp.iterdir()) == []
    with open_sources(archive, prototxt="b/deploy.prototxt", weights="b/w.caffemodel") as found:
        assert (found.prototxt.parent.name, found.caffemodel.parent.name) == ("b", "b")


def test_archive_member_named_explicitly(tmp_path: Path, private_tmp: Path) -> None:
    files = {**DIGITS_FILES, "deploy_batch.prototxt": b"# another deploy\n"}
    with open_sources(build_archive(tmp_path / "m.zip", files), prototxt="deploy_batch.prototxt") as found:
        assert found.prototxt.read_bytes() == b"# another deploy\n"


def test_temp_dir_removed_after_an_exception(tmp_path: Path, private_tmp: Path) -> None:
    archive = build_archive(tmp_path / "m.tar.gz", DIGITS_FILES)
    seen: list[Path] = []
    with pytest.raises(RuntimeError, match="converter failed"), open_sources(archive) as found:
        seen.append(found.prototxt.parent)
        assert seen[0].is_dir()
        raise RuntimeError("converter failed")
    assert not seen[0].exists()
    assert list(private_tmp.iterdir()) == []


def test_hostile_archive_leaves_nothing(tmp_path: Path, private_tmp: Path) -> None:
    archive = tmp_path / "evil.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in DIGITS_FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(DecoderError, match="symbolic link"), open_sources(archive):
        pytest.fail("a hostile archive must not be opened")
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("name", ["model.tar.gz", "model.zip"])
def test_non_archive_with_an_archive_name(tmp_path: Path, private_tmp: Path, name: str) -> None:
    fake = tmp_path / name
    fake.write_text("<html>404 Not Found</html>")  # what a failed browser download often is
    with pytest.raises(DecoderError) as caught, open_sources(fake):
        pass
    assert str(fake) in str(caught.value)
    assert list(private_tmp.iterdir()) == []


def test_archive_without_caffemodel(tmp_path: Path, private_tmp: Path) -> None:
    archive = build_archive(tmp_path / "m.zip", {"deploy.prototxt": b"", "labels.txt": b"a\n"})
    with pytest.raises(DecoderError, match=r"no \.caffemodel found") as caught, open_sources(archive):
        pass
    assert str(archive) in str(caught.value)


# --- folders -----------------------------------------------------------------------


def test_job_folder_takes_the_highest_snapshot(tmp_path: Path) -> None:
    files = {k: v for k, v in DIGITS_FILES.items() if not k.endswith(".caffemodel")}
    for iteration in (100, 2000, 300):  # 300 sorts after 2000 as text: the number must win
        files[f"snapshot_iter_{iteration}.caffemodel"] = b"w"
    with open_sources(write_files(tmp_path / "job", files)) as found:
        assert found.caffemodel.name == "snapshot_iter_2000.caffemodel"
        assert found.is_digits
        assert found.origin == str(tmp_path / "job")


def test_info_json_names_the_snapshot(tmp_path: Path) -> None:
    files = {**DIGITS_FILES, "snapshot_iter_1408.caffemodel": b"w", "info.json": json.dumps(INFO).encode()}
    with open_sources(write_files(tmp_path / "job", files)) as found:
        assert found.caffemodel.name == "snapshot_iter_704.caffemodel"


def test_info_json_naming_a_missing_snapshot(tmp_path: Path) -> None:
    info = {"snapshot file": "/srv/jobs/x/snapshot_iter_9.caffemodel"}
    files = {**DIGITS_FILES, "info.json": json.dumps(info).encode()}
    with (
        pytest.raises(DecoderError, match=r"snapshot_iter_9\.caffemodel.*--weights"),
        open_sources(write_files(tmp_path / "job", files)),
    ):
        pass


def test_plain_caffe_folder(tmp_path: Path) -> None:
    files = {
        "lenet.prototxt": b"",
        "lenet_train_test.prototxt": b"",
        "lenet_solver.prototxt": b"",
        "lenet_iter_10000.caffemodel": b"",
    }
    with open_sources(write_files(tmp_path / "plain", files)) as found:
        assert found.prototxt.name == "lenet.prototxt"
        assert found.train_val is not None and found.train_val.name == "lenet_train_test.prototxt"
        assert (found.mean, found.labels, found.info, found.is_digits) == (None, None, {}, False)


def test_ambiguous_folder_lists_candidates(tmp_path: Path) -> None:
    folder = write_files(
        tmp_path / "m", {"a.prototxt": b"", "b.prototxt": b"", "train_val.prototxt": b"", "w.caffemodel": b""}
    )
    with pytest.raises(DecoderError) as caught, open_sources(folder):
        pass
    message = str(caught.value)
    assert str(folder) in message
    assert "a.prototxt" in message and "b.prototxt" in message and "--prototxt" in message
    assert "train_val.prototxt" not in message
    with open_sources(folder, prototxt="b.prototxt") as found:  # settled by naming one
        assert found.prototxt == folder / "b.prototxt"


def test_several_unnumbered_caffemodels(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "m", {"deploy.prototxt": b"", "a.caffemodel": b"", "b.caffemodel": b""})
    with pytest.raises(DecoderError, match=r"a\.caffemodel, b\.caffemodel.*--weights"), open_sources(folder):
        pass
    with open_sources(folder, weights=folder / "b.caffemodel") as found:
        assert found.caffemodel.name == "b.caffemodel"


def test_prototxt_pairs_with_the_caffemodel_of_the_same_stem(tmp_path: Path) -> None:
    names = {f"det{i}{ext}": b"" for i in (1, 2, 3) for ext in (".prototxt", ".caffemodel")}
    folder = write_files(tmp_path / "mtcnn", names)
    with open_sources(folder, prototxt="det2.prototxt") as found:
        assert (found.prototxt.name, found.caffemodel.name) == ("det2.prototxt", "det2.caffemodel")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"deploy.prototxt": b""}, r"no \.caffemodel found"),
        ({"w.caffemodel": b"", "train_val.prototxt": b"", "solver.prototxt": b""}, r"no deploy prototxt \(only"),
        ({"labels.txt": b""}, r"no deploy prototxt and no \.caffemodel found"),
    ],
)
def test_missing_files_are_named(tmp_path: Path, files: dict[str, bytes], expected: str) -> None:
    folder = write_files(tmp_path / "m", files)
    with pytest.raises(DecoderError, match=expected) as caught, open_sources(folder):
        pass
    assert str(caught.value).startswith(f"{folder}: ")


def test_digits_model_job_finds_its_dataset_job(tmp_path: Path) -> None:
    """A DIGITS model job folder has no mean or labels: they live in the dataset job folder."""
    jobs = tmp_path / "jobs"
    write_files(jobs / "20160809-dataset", {"mean.binaryproto": b"m", "labels.txt": b"a\nb\n"})
    train_val = (
        b'layer { type: "Data" transform_param { mean_file: "/home/u/digits/jobs/20160809-dataset/mean.binaryproto" } }'
    )
    model_job = write_files(
        jobs / "20160809-model",
        {
            "deploy.prototxt": b"",
            "original.prototxt": b"",
            "solver.prototxt": b"",
            "train_val.prototxt": train_val,
            "snapshot_iter_10.caffemodel": b"",
            "snapshot_iter_20.caffemodel": b"",
        },
    )
    with open_sources(model_job) as found:
        assert found.mean == jobs / "20160809-dataset" / "mean.binaryproto"
        assert found.labels == jobs / "20160809-dataset" / "labels.txt"
        assert found.caffemodel.name == "snapshot_iter_20.caffemodel"
        assert found.is_digits


def test_explicit_keywords_override_the_folder(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "job", DIGITS_FILES)
    other_labels = tmp_path / "names.txt"
    other_labels.write_text("x\ny\n")
    with open_sources(folder, labels=other_labels, mean=folder / "mean.binaryproto") as found:
        assert found.labels == other_labels
        assert found.prototxt.name == "deploy.prototxt"
    with (
        pytest.raises(DecoderError, match=r"labels file not found \(nor inside"),
        open_sources(folder, labels="nope.txt"),
    ):
        pass


# --- the explicit form ---------------------------------------------------------------


def test_explicit_form(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "f", DIGITS_FILES)
    with open_sources(
        prototxt=folder / "deploy.prototxt",
        weights=folder / "snapshot_iter_704.caffemodel",
        mean=folder / "mean.binaryproto",
        labels=folder / "labels.txt",
        train_val=folder / "train_val.prototxt",
    ) as found:
        assert found == ModelSources(
            prototxt=folder / "deploy.prototxt",
            caffemodel=folder / "snapshot_iter_704.caffemodel",
            mean=folder / "mean.binaryproto",
            labels=folder / "labels.txt",
            train_val=folder / "train_val.prototxt",
            origin=str(folder / "deploy.prototxt"),
            is_digits=True,
        )
    with open_sources(prototxt=folder / "deploy.prototxt", weights=folder / "snapshot_iter_704.caffemodel") as found:
        assert (found.mean, found.labels, found.train_val, found.is_digits) == (None, None, None, False)


def test_explicit_form_errors(tmp_path: Path) -> None:
    deploy = write_files(tmp_path, {"deploy.prototxt": b""}) / "deploy.prototxt"
    with pytest.raises(DecoderError, match="--weights"), open_sources(prototxt=deploy):
        pass
    with pytest.raises(DecoderError, match="--prototxt and --weights"), open_sources():
        pass
    missing = tmp_path / "gone.caffemodel"
    with pytest.raises(DecoderError) as caught, open_sources(prototxt=deploy, weights=missing):
        pass
    assert str(caught.value) == f"{missing}: weights not found"
    with pytest.raises(DecoderError, match="a folder, not a file"), open_sources(prototxt=deploy, weights=tmp_path):
        pass


def test_path_that_is_neither_folder_nor_archive(tmp_path: Path) -> None:
    deploy = write_files(tmp_path, {"deploy.prototxt": b'input: "data"\n'}) / "deploy.prototxt"
    with pytest.raises(DecoderError, match="--prototxt and --weights"), open_sources(deploy):
        pass
    with pytest.raises(DecoderError, match="no such file or folder"), open_sources(tmp_path / "missing"):
        pass


# --- labels and info.json ----------------------------------------------------------------


def test_labels_skip_blank_lines_and_keep_text(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes("\ufeff0 zero\r\n\r\n  \n1 one  \n\t\n2\u00a0two\nlast".encode())
    assert read_labels(path) == ("0 zero", "1 one", "2\u00a0two", "last")


def test_labels_not_utf8_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes(b"caf\xe9\n\nna\xefve\n")  # Latin-1, as an old Windows editor saves it
    assert read_labels(path) == ("café", "naïve")
    with pytest.raises(DecoderError, match="cannot read the labels file"):
        read_labels(tmp_path / "nope.txt")


def test_read_info(tmp_path: Path) -> None:
    path = tmp_path / "info.json"
    path.write_text(json.dumps({"image dimensions": [28, 28, 1], "caffe flavor": "NVIDIA"}, indent=4))
    assert read_info(path) == {"image dimensions": [28, 28, 1], "caffe flavor": "NVIDIA"}
    path.write_text('{\n  "framework": "caffe",\n  "name": oops\n}')
    with pytest.raises(DecoderError, match=r"line 3, column 11") as caught:
        read_info(path)
    assert str(path) in str(caught.value)
    path.write_text("[1, 2]")
    with pytest.raises(DecoderError, match="JSON object"):
        read_info(path)


def test_corrupt_info_json_in_archive(tmp_path: Path, private_tmp: Path) -> None:
    archive = build_archive(tmp_path / "m.zip", {**DIGITS_FILES, "info.json": b"{not json"})
    with pytest.raises(DecoderError, match=r"info\.json: not valid JSON"), open_sources(archive):
        pass
    assert list(private_tmp.iterdir()) == []


# --- train_val transform ------------------------------------------------------------------


@pytest.mark.shared
def test_real_digits_train_val() -> None:
    transform = read_train_transform(shared_file(EAGLEEYE / "train_val.prototxt"))
    assert transform.mean_kind == "image"
    assert transform.scale == 0.0125
    assert transform.crop_size == 0
    assert transform.mean_values == ()
    assert transform.mean_file == "/home/ga73mac/caffe/digits/digits/jobs/20160809-163916-d65f/mean.binaryproto"


@pytest.mark.shared
def test_real_v1_train_test() -> None:
    transform = read_train_transform(shared_file(CIFAR_V1 / "cifar10_full_train_test.prototxt"))
    assert (transform.mean_kind, transform.mean_file, transform.scale, transform.crop_size) == (
        "image",
        "examples/cifar10/mean.binaryproto",
        1.0,
        0,
    )


def test_test_phase_is_preferred(tmp_path: Path) -> None:
    path = tmp_path / "train_val.prototxt"
    path.write_text(
        """
        layer { name: "train-data" type: "Data" top: "data" include { phase: TRAIN }
          transform_param { mirror: true crop_size: 227 mean_value: 1 mean_value: 2 mean_value: 3 } }
        layer { name: "val-data" type: "Data" top: "data" include { phase: TEST }
          transform_param { crop_size: 224 mean_value: 104 mean_value: 117 mean_value: 123.5 scale: 0.00390625 } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" }
        """
    )
    transform = read_train_transform(path)
    assert transform.mean_kind == "pixel"
    assert transform.mean_values == (104.0, 117.0, 123.5)
    assert transform.crop_size == 224
    assert transform.scale == 0.00390625
    assert transform.mean_file == ""


def test_train_only_transform_is_used_when_alone(tmp_path: Path) -> None:
    path = tmp_path / "train.prototxt"
    path.write_text('layers { name: "d" type: DATA include { phase: TRAIN } transform_param { crop_size: 24 } }')
    transform = read_train_transform(path)
    assert (transform.mean_kind, transform.crop_size, transform.scale) == ("none", 24, 1.0)


def test_v0_data_layer(tmp_path: Path) -> None:
    path = tmp_path / "v0.prototxt"
    path.write_text('layers { layer { name: "mnist" type: "data" meanfile: "m.binaryproto" scale: 0.5 cropsize: 20 } }')
    transform = read_train_transform(path)
    assert (transform.mean_kind, transform.mean_file, transform.scale, transform.crop_size) == (
        "image",
        "m.binaryproto",
        0.5,
        20,
    )


def test_no_data_layer_and_unknown_fields(tmp_path: Path) -> None:
    path = tmp_path / "train_val.prototxt"
    path.write_text('name: "x"\nlayer { name: "in" type: "Input" nvidia_only_param { fancy { depth: 3 } } }\n')
    transform = read_train_transform(path)
    assert (transform.mean_kind, transform.mean_values, transform.crop_size, transform.scale, transform.mean_file) == (
        "none",
        (),
        0,
        1.0,
        "",
    )


def test_both_means_is_refused_like_caffe(tmp_path: Path) -> None:
    path = tmp_path / "train_val.prototxt"
    path.write_text('layer { name: "d" type: "Data" transform_param { mean_file: "m" mean_value: 1 } }')
    with pytest.raises(DecoderError, match="both mean_file and mean_value"):
        read_train_transform(path)


def test_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    lines = [
        'name: "LeNet"',
        "layer {",
        '  name: "data"',
        "  transform_param { scale: 0.0125 crop_size: }",
        "}",
    ]
    path = tmp_path / "train_val.prototxt"
    path.write_text("\n".join(lines) + "\n")
    line = 4
    column = lines[line - 1].index("}", lines[line - 1].index("crop_size")) + 1  # the token where a number was due
    with pytest.raises(DecoderError) as caught:
        read_train_transform(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert f"line {line}, column {column}" in message
