"""What the model's metadata states, what it only assumed, and how to change it.

The diagnosis measures the user's inputs against the preprocessing the .onnx carries
(:class:`~decoder.spec.PreprocessSpec`), not against DIGITS's pipeline: for a DIGITS model
they are the same, for other Caffe models some settings are guesses made at conversion
(Caffe's BGR, no mean, scale 1). ``spec.provenance`` records, per setting, where each one
came from; a phrase starting with "assumed" is a guess. When the user's blob departs from
a setting, the departure is either the user's mistake or the metadata's, and only a
measurement against the expected labels tells which (:func:`significantly_better`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from decoder.spec import PreprocessSpec

#: The settings a user's blob can contradict, and the finding codes that say it does.
SETTING_CODES: dict[str, tuple[str, ...]] = {
    "channel_order": ("channel-order",),
    "mean": ("mean-missing", "mean-wrong"),
    "scale": ("input-range",),
}
#: Words for the settings in messages.
SETTING_NAMES = {"channel_order": "channel order", "mean": "mean", "scale": "scale"}


def provenance_of(spec: PreprocessSpec) -> dict[str, str]:
    """Where each setting came from; empty for files converted before decode recorded it."""
    return dict(spec.provenance)


def is_assumed(spec: PreprocessSpec, setting: str) -> bool:
    """True when the conversion guessed ``setting`` (no file or option stated it)."""
    return setting in spec.assumed()


def source_phrase(spec: PreprocessSpec, setting: str) -> str:
    """' (phrase)' naming where the metadata's value came from, or '' when unknown."""
    phrase = provenance_of(spec).get(setting, "")
    return f" ({phrase})" if phrase else ""


def reconvert_hint(spec: PreprocessSpec, options: str, model: str = "MODEL.onnx") -> str:
    """The commands that rewrite the metadata with ``options`` (e.g. "--channel-order RGB")."""
    sources = spec.sources or {}
    origin = sources.get("origin", "")
    if origin and not origin.endswith(".prototxt"):
        source = origin  # an archive or a folder
    elif sources.get("prototxt") and sources.get("caffemodel"):
        flags = {"prototxt": "--prototxt", "caffemodel": "--weights", "mean": "--mean", "labels": "--labels"}
        flags["train_val"] = "--train-val"
        source = " ".join(f"{flag} {sources[key]}" for key, flag in flags.items() if sources.get(key))
    else:
        source = "SOURCE"
    name = Path(model).name if model.endswith(".onnx") else "MODEL.onnx"
    return f"`decode convert {source} -o {name} {options}` (or `decode attach {name} -o {name} {options}`)"


def unknown_provenance_note(spec: PreprocessSpec, settings: Sequence[str]) -> str:
    """Said once when the file does not record where the contradicted ``settings`` came from (older conversions)."""
    unknown = [SETTING_NAMES.get(s, s) for s in settings if s not in spec.provenance]
    if not unknown:
        return ""
    were = "was" if len(unknown) == 1 else "were"
    return (
        f"the model's metadata does not record whether its {' and '.join(unknown)} {were} stated by a file or "
        "assumed (converted by an older decode): the findings take them as stated; reconvert with `decode convert` "
        "to see where each setting came from"
    )


def significantly_better(better: np.ndarray, worse: np.ndarray, expected: np.ndarray) -> bool:
    """Do predictions ``better`` match ``expected`` more often than ``worse`` beyond chance?

    A sign test on the inputs where exactly one of the two is right (McNemar): at least
    2 more right answers, and the gain at least twice its standard error.
    """
    right_better = better == expected
    right_worse = worse == expected
    gained = int(np.sum(right_better & ~right_worse))
    lost = int(np.sum(right_worse & ~right_better))
    return gained - lost >= 2 and gained - lost >= 2 * math.sqrt(gained + lost)


def percent(predictions: np.ndarray, expected: np.ndarray) -> str:
    return f"{100 * float(np.mean(predictions == expected)):.1f}%"


def stated_settings(spec: PreprocessSpec) -> dict[str, str]:
    """The settings the diagnosis measures against, each with where it came from ("assumed: ..." for guesses)."""
    mean = {"image": "image", "pixel": "pixel", "none": "none"}[spec.mean_kind]
    if spec.mean_kind == "pixel" and spec.mean is not None:
        mean += " " + ", ".join(f"{v:g}" for v in spec.mean)
    values = {
        "channel_order": spec.channel_order if spec.channels == 3 else "grey",
        "mean": mean,
        "scale": f"{spec.scale:g}",
        "resize_mode": spec.resize_mode,
    }
    return {
        SETTING_NAMES.get(key, key.replace("_", " ")): value + source_phrase(spec, key) for key, value in values.items()
    }
