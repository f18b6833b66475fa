"""Conversion records the DIGITS job (id and name) that `decode serve` answers DIGITS clients by."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import onnx
import pytest

from decoder import DecoderError
from decoder.conversion import convert
from decoder.job import JOB_KEY, DigitsJob, job_of, read_job
from decoder.sources import open_sources
from tests.test_conversion import small_classifier, write_labels


def converted_job(source: Path, output: Path) -> DigitsJob | None:
    with open_sources(source) as sources:
        convert(sources, output)
    props = {p.key: p.value for p in onnx.load(str(output), load_external_data=False).metadata_props}
    return read_job(props, str(output))


def test_info_json_job_id_and_name_are_recorded(tmp_path: Path) -> None:
    folder = small_classifier(tmp_path / "model")
    write_labels(folder, 4)
    info = {"job id": "20160809-163916-d65f", "name": "LeNet MNIST", "framework": "caffe"}
    (folder / "info.json").write_text(json.dumps(info))
    assert converted_job(folder, tmp_path / "m.onnx") == DigitsJob("20160809-163916-d65f", "LeNet MNIST")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("20170102-030405-beef", "20170102-030405-beef"),  # a DIGITS job folder
        ("20170102-030405-beef_epoch_30.0.tar.gz", "20170102-030405-beef"),  # DIGITS's download name
        ("my_model.tar.gz", None),
    ],
)
def test_job_id_from_a_digits_folder_or_archive_name(tmp_path: Path, name: str, expected: str | None) -> None:
    folder = small_classifier(tmp_path / "files")
    write_labels(folder, 4)
    if name.endswith(".tar.gz"):
        source = tmp_path / name
        with tarfile.open(source, "w:gz") as tar:
            for member in folder.iterdir():
                tar.add(member, arcname=member.name)
    else:
        source = folder.rename(tmp_path / name)
    job = converted_job(source, tmp_path / "m.onnx")
    assert (job.job_id if job else None) == expected


def test_info_json_wins_over_the_folder_name() -> None:
    assert job_of({"job id": "20990101-000000-0000"}, "20170102-030405-beef").job_id == "20990101-000000-0000"
    assert job_of({}, "") is None


def test_damaged_job_metadata_is_refused() -> None:
    with pytest.raises(DecoderError, match=r"m\.onnx: corrupt decoder metadata .*decoder\.job"):
        read_job({JOB_KEY: "[1, 2]"}, "m.onnx")
    assert read_job({}, "m.onnx") is None
