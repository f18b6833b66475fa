"""Where each preprocessing setting came from: recorded in the spec, carried in the .onnx, guesses flagged."""

from __future__ import annotations

import json

import pytest

from decoder.errors import DecoderError
from decoder.spec import SPEC_KEY, PreprocessSpec

PROVENANCE = {
    "input_shape": "deploy.prototxt input_shape",
    "channel_order": "assumed: BGR (Caffe's convert_imageset order); change with --channel-order RGB",
    "mean": "option --mean-values",
    "scale": "assumed: 1 (no train_val.prototxt); change with --scale",
}


def test_provenance_round_trips_through_the_metadata_and_lists_the_guesses() -> None:
    spec = PreprocessSpec(channels=3, height=8, width=8, provenance=dict(PROVENANCE))
    again = PreprocessSpec.from_metadata(spec.to_metadata())
    assert again.provenance == PROVENANCE
    assert again.assumed() == {key: PROVENANCE[key] for key in ("channel_order", "scale")}


def test_a_spec_written_without_provenance_reads_as_empty_and_is_still_equal() -> None:
    plain = PreprocessSpec(channels=1, height=4, width=4)
    props = plain.to_metadata()
    assert "provenance" not in json.loads(props[SPEC_KEY])  # the entry older versions wrote and read
    again = PreprocessSpec.from_metadata(props)
    assert again.provenance == {} and again.assumed() == {}
    assert again == plain.with_changes(provenance={"mean": "option --mean"})  # information, not a setting


@pytest.mark.parametrize("forged", [["mean"], {"mean": 3}, "assumed"])
def test_forged_provenance_is_corrupt_metadata(forged: object) -> None:
    props = PreprocessSpec(channels=1, height=4, width=4).to_metadata()
    props[SPEC_KEY] = json.dumps({**json.loads(props[SPEC_KEY]), "provenance": forged})
    with pytest.raises(DecoderError, match="corrupt decoder metadata"):
        PreprocessSpec.from_metadata(props, "model.onnx")
