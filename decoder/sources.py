"""Find the files of a trained model wherever the user keeps them, and read the small ones.

Users arrive with one of four things: a DIGITS "Download Model" archive, a DIGITS job
folder (several snapshots, no mean or labels of its own), a plain Caffe folder, or the
individual files. :func:`open_sources` turns each into the same :class:`ModelSources`, so
the converter never cares which. It guesses only where the guess is unambiguous (the one
deploy prototxt, the highest snapshot) and otherwise stops with a message that lists the
candidates and the option that settles it. Archives are extracted with
:mod:`decoder.archive` into a private temporary folder that disappears with the context.

Also here: readers for labels.txt, info.json and the data layer's ``transform_param`` in
train_val.prototxt, the three places where DIGITS keeps what preprocessing needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from decoder.archive import extract_archive, is_archive
from decoder.caffe_io import V1_TYPE_NAMES, read_prototxt
from decoder.caffe_proto import caffe_pb2
from decoder.errors import DecoderError, display_path

SNAPSHOT_PATTERN = re.compile(r"^snapshot_iter_(\d+)\.caffemodel$")

# Prototxts DIGITS and Caffe users keep beside the deploy net, which are never the deploy net.
NOT_DEPLOY_NAMES: frozenset[str] = frozenset({"train_val.prototxt", "solver.prototxt", "original.prototxt"})
NOT_DEPLOY_WORDS: tuple[str, ...] = ("solver", "train")

# Python 2's bytes.strip() whitespace: DIGITS ran on Python 2, and str.strip() would also
# eat Unicode spaces (a label of one no-break space is a label to DIGITS).
_PY2_WHITESPACE = " \t\n\r\x0b\x0c"

_ARCHIVE_HELP = ".tar.gz, .tgz, .tar, .tar.bz2 or .zip"

#: Names people give a labels file beside a model, in the order a folder is searched.
LABEL_FILE_NAMES: tuple[str, ...] = (
    "labels.txt",
    "label.txt",
    "synset_words.txt",
    "classes.txt",
    "class_names.txt",
    "classnames.txt",
    "labels.names",
    "classes.names",
)
#: An ImageNet synset line: "n01440764 tench, Tinca tinca" (WordNet id, then the names).
_SYNSET_LINE = re.compile(r"^n\d{8}\s+(\S.*)$")
#: A numbered label line: "0 zero", "1: one", "2,two".
_NUMBERED_LINE = re.compile(r"^(\d+)\s*[\s:,;]\s*(\S.*)$")


@dataclass(frozen=True)
class ModelSources:
    """The files of one model, however the user handed them over."""

    prototxt: Path  # deploy net
    caffemodel: Path
    mean: Path | None = None
    labels: Path | None = None
    train_val: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)  # parsed info.json ({} when absent)
    origin: str = ""  # what the user named (archive path, folder), for messages and metadata
    is_digits: bool = False  # came from a DIGITS archive/job
    given: frozenset[str] = field(default=frozenset(), compare=False)  # fields named by option, not found


@dataclass(frozen=True)
class TrainTransform:
    """The training data layer's ``transform_param``: how Caffe fed images while training.

    DIGITS keeps its mean choice only here (``use_mean`` is not in info.json), see FACTS 2.
    """

    mean_kind: str  # "image" (mean_file), "pixel" (mean_value), "none"
    mean_values: tuple[float, ...]  # for pixel (BGR order as written)
    crop_size: int  # 0 when none
    scale: float  # transform_param.scale (1.0 default)
    mean_file: str  # as written in train_val (often an absolute path on the DIGITS server), "" when none
    data_type: str = ""  # the data layer's type (ImageData reads files with OpenCV: BGR), "" when unknown


@dataclass(frozen=True)
class _Given:
    """The files the user named explicitly; each overrides what a folder would provide."""

    prototxt: str | Path | None = None
    weights: str | Path | None = None
    mean: str | Path | None = None
    labels: str | Path | None = None
    train_val: str | Path | None = None

    def named(self) -> frozenset[str]:
        """The :class:`ModelSources` fields given by option."""
        fields = {"prototxt": self.prototxt, "caffemodel": self.weights, "mean": self.mean}
        fields |= {"labels": self.labels, "train_val": self.train_val}
        return frozenset(key for key, value in fields.items() if value is not None)


@contextlib.contextmanager
def open_sources(
    path: str | Path | None = None,
    *,
    prototxt: str | Path | None = None,
    weights: str | Path | None = None,
    mean: str | Path | None = None,
    labels: str | Path | None = None,
    train_val: str | Path | None = None,
) -> Iterator[ModelSources]:
    """Yield the :class:`ModelSources` for an archive, a folder, or explicitly named files.

    An archive is extracted into a private temporary folder removed on exit, also when the
    body raises. Explicit keywords win over what ``path`` provides; a relative keyword that
    does not exist as given is also looked up inside the folder or archive, so
    ``open_sources("model.tgz", prototxt="deploy_v2.prototxt")`` picks an archive member.
    """
    given = _Given(prototxt, weights, mean, labels, train_val)
    if path is None:
        yield _explicit(given)
        return
    path = Path(path)
    origin = display_path(path)
    if path.is_dir():
        yield _from_folder(path, origin, given)
        return
    if not path.exists():
        raise DecoderError("no such file or folder", path)
    if not is_archive(path):
        raise DecoderError(
            f"neither a folder nor a model archive ({_ARCHIVE_HELP}); "
            "to name the files one by one, pass --prototxt and --weights",
            path,
        )
    scratch = Path(tempfile.mkdtemp(prefix="decoder-"))
    try:
        files = extract_archive(path, scratch)
        root = _archive_root(files, scratch, path, given)
        yield _from_folder(root, origin, given, tree=files, scratch=scratch)
    except DecoderError as exc:  # also those raised by the caller's `with` body
        _name_members(exc, scratch, origin)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _name_members(exc: DecoderError, scratch: Path, archive: str) -> None:
    """Name extracted files ``archive:member`` in ``exc``, not by a temporary path about to vanish."""
    prefixes = sorted({str(scratch), str(scratch.resolve())}, key=len, reverse=True)

    def renamed(text: str) -> str:
        for prefix in prefixes:
            text = text.replace(prefix + os.sep, f"{archive}:")
        return text

    if exc.path is not None:
        exc.path = renamed(exc.path)
    exc.message = renamed(exc.message)
    exc.args = (str(exc),)


# --- the explicit form --------------------------------------------------------------


def _explicit(given: _Given) -> ModelSources:
    missing = [flag for flag, value in (("--prototxt", given.prototxt), ("--weights", given.weights)) if value is None]
    if missing:
        raise DecoderError(f"no model given: name a DIGITS archive or a model folder, or pass {' and '.join(missing)}")
    assert given.prototxt is not None and given.weights is not None
    prototxt = _given_file(given.prototxt, "deploy prototxt", ())
    caffemodel = _given_file(given.weights, "weights", ())
    mean = _given_file(given.mean, "mean file", ()) if given.mean is not None else None
    labels = _given_file(given.labels, "labels file", ()) if given.labels is not None else None
    train_val = _given_file(given.train_val, "train_val prototxt", ()) if given.train_val is not None else None
    names = {p.name for p in (mean, labels) if p is not None}
    return ModelSources(
        prototxt=prototxt,
        caffemodel=caffemodel,
        mean=mean,
        labels=labels,
        train_val=train_val,
        origin=display_path(given.prototxt),
        is_digits=_digits_layout(caffemodel, names),
        given=given.named(),
    )


def _given_file(value: str | Path, what: str, containers: tuple[Path, ...], origin: str = "") -> Path:
    """An explicitly named file: as given, else (relative names) inside the folder or archive."""
    path = Path(value)
    if path.is_file():
        return path
    if not path.is_absolute():
        for container in containers:
            inside = container / path
            if inside.is_file():
                return inside
    if path.is_dir():
        raise DecoderError(f"the {what} given is a folder, not a file", path)
    if path.exists():  # a FIFO or device: reading it could block forever
        raise DecoderError(f"the {what} given is not a regular file (a device, FIFO or socket?)", path)
    where = f" (nor inside {origin})" if origin else ""
    raise DecoderError(f"{what} not found{where}", path)


# --- folders and extracted archives ------------------------------------------------


def _archive_root(files: list[Path], scratch: Path, archive: Path, given: _Given) -> Path:
    """The folder of an extracted archive that holds the model.

    DIGITS archives are flat, but people re-pack them inside one top-level folder; the model
    lives where the .caffemodel is (or, failing that, the prototxt, for a clearer error).
    An archive of several models needs the user to name members (``a/deploy.prototxt``),
    which are then found relative to the archive's top.
    """
    for suffix in (".caffemodel", ".prototxt"):
        folders = sorted({f.parent for f in files if f.name.lower().endswith(suffix)})
        if len(folders) == 1:
            return folders[0]
        if len(folders) > 1 and given.prototxt is not None and given.weights is not None:
            return scratch
        if len(folders) > 1:
            listed = ", ".join(str(PurePosixPath(*d.relative_to(scratch).parts)) or "." for d in folders)
            raise DecoderError(
                f"the archive holds {suffix} files in several folders ({listed}); "
                f"pass --prototxt and --weights as paths inside the archive (e.g. {listed.split(', ')[0]}/...)",
                archive,
            )
    return scratch


def _from_folder(
    folder: Path, origin: str, given: _Given, tree: list[Path] | None = None, scratch: Path | None = None
) -> ModelSources:
    """Pick the model files of ``folder``; ``tree`` lists the files extracted into ``scratch``."""
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file())
    except OSError as exc:
        raise DecoderError(f"cannot list the folder: {exc.strerror or exc}", origin) from exc
    by_name = {p.name: p for p in files}
    containers = (folder,) if scratch is None else (folder, scratch)

    def lookup(name: str) -> Path | None:
        """A file by exact name: in the folder, else (archives) the only one in the tree."""
        if name in by_name:
            return by_name[name]
        if tree is not None:
            matches = [f for f in tree if f.name == name]
            if len(matches) == 1:
                return matches[0]
        return None

    info_path = lookup("info.json")
    info = read_info(info_path) if info_path is not None else {}

    missing: list[str] = []
    prototxt = caffemodel = None
    if given.prototxt is not None:
        prototxt = _given_file(given.prototxt, "deploy prototxt", containers, origin)
    else:
        prototxt = _pick_deploy(files, origin, missing)
    if given.weights is not None:
        caffemodel = _given_file(given.weights, "weights", containers, origin)
    else:
        caffemodel = _pick_caffemodel(files, info, origin, missing, prototxt)
    if missing:
        raise DecoderError(f"{' and '.join(missing)} found", origin)
    assert prototxt is not None and caffemodel is not None

    def optional(value: str | Path | None, what: str, found: Path | None) -> Path | None:
        return _given_file(value, what, containers, origin) if value is not None else found

    train_val = optional(given.train_val, "train_val prototxt", lookup("train_val.prototxt") or _pick_train_val(files))
    mean = optional(given.mean, "mean file", _pick_mean(files, info, lookup))
    labels_found = _pick_labels(info, lookup)
    labels = optional(given.labels, "labels file", labels_found)
    if tree is None and mean is None and train_val is not None:
        mean, labels = _dataset_job_files(folder, train_val, labels)

    names = set(by_name) | {p.name for p in (mean, labels) if p is not None}
    return ModelSources(
        prototxt=prototxt,
        caffemodel=caffemodel,
        mean=mean,
        labels=labels,
        train_val=train_val,
        info=info,
        origin=origin,
        is_digits=info_path is not None or _digits_layout(caffemodel, names),
        given=given.named(),
    )


def _pick_deploy(files: list[Path], origin: str, missing: list[str]) -> Path | None:
    """``deploy.prototxt``, else the one prototxt that is not a training net or a solver."""
    prototxts = [p for p in files if p.suffix.lower() == ".prototxt"]
    for p in prototxts:
        if p.name == "deploy.prototxt":
            return p
    candidates = [p for p in prototxts if not _is_training_prototxt(p.name)]
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        listed = ", ".join(p.name for p in candidates)
        raise DecoderError(
            f"several prototxt files could be the deploy net ({listed}); pass --prototxt to choose", origin
        )
    others = f" (only {', '.join(p.name for p in prototxts)}, which are not deploy nets)" if prototxts else ""
    missing.append(f"no deploy prototxt{others}")
    return None


def _is_training_prototxt(name: str) -> bool:
    lowered = name.lower()
    return lowered in NOT_DEPLOY_NAMES or any(word in lowered for word in NOT_DEPLOY_WORDS)


def _pick_caffemodel(
    files: list[Path], info: dict[str, Any], origin: str, missing: list[str], prototxt: Path | None
) -> Path | None:
    """info.json's "snapshot file", else the only .caffemodel, else the highest snapshot_iter_N.

    Folders of several nets (MTCNN's det1..det4) pair each prototxt with the caffemodel of the
    same stem, so naming the prototxt is enough there.
    """
    models = [p for p in files if p.suffix.lower() == ".caffemodel"]
    named = _info_name(info, "snapshot file")
    if named is not None:
        for p in models:
            if p.name == named:
                return p
        raise DecoderError(f"info.json names the snapshot {named!r}, which is not there; pass --weights", origin)
    if len(models) == 1:
        return models[0]
    if not models:
        missing.append("no .caffemodel")
        return None
    numbered = [(int(m.group(1)), p) for p in models if (m := SNAPSHOT_PATTERN.match(p.name))]
    if len(numbered) == len(models):
        return max(numbered)[1]
    same_stem = [p for p in models if prototxt is not None and p.stem == prototxt.stem]
    if len(same_stem) == 1:
        return same_stem[0]
    listed = ", ".join(p.name for p in models)
    raise DecoderError(f"several .caffemodel files ({listed}); pass --weights to choose", origin)


def _pick_train_val(files: list[Path]) -> Path | None:
    """A plain Caffe folder's ``*train_test*``/``*train_val*`` prototxt, when there is one only."""
    candidates = [
        p
        for p in files
        if p.suffix.lower() == ".prototxt" and "train" in p.name.lower() and "solver" not in p.name.lower()
    ]
    return candidates[0] if len(candidates) == 1 else None


def _pick_mean(files: list[Path], info: dict[str, Any], lookup: Callable[[str], Path | None]) -> Path | None:
    """info.json's "mean file", else mean.binaryproto, else the only .binaryproto."""
    found = lookup(_info_name(info, "mean file") or "mean.binaryproto") or lookup("mean.binaryproto")
    if found is not None:
        return found
    protos = [p for p in files if p.suffix.lower() == ".binaryproto"]
    return protos[0] if len(protos) == 1 else None


def _pick_labels(info: dict[str, Any], lookup: Callable[[str], Path | None]) -> Path | None:
    """info.json's "labels file", else the first of :data:`LABEL_FILE_NAMES` that is there."""
    named = _info_name(info, "labels file")
    for name in (named, *LABEL_FILE_NAMES):
        if name is not None and (found := lookup(name)) is not None:
            return found
    return None


def _info_name(info: dict[str, Any], key: str) -> str | None:
    """The file name an info.json entry points at (DIGITS may store a server path)."""
    value = info.get(key)
    if not isinstance(value, str) or not value.strip():
        return None
    return PurePosixPath(value.strip().replace("\\", "/")).name


def _dataset_job_files(folder: Path, train_val: Path, labels: Path | None) -> tuple[Path | None, Path | None]:
    """A DIGITS model job's mean and labels, which live in its dataset job's folder.

    train_val's ``mean_file`` is the dataset job's absolute path on the DIGITS server; when
    the jobs folder was copied elsewhere, the dataset job is a sibling of this folder.
    """
    try:
        written = read_train_transform(train_val).mean_file
    except DecoderError:
        return None, labels  # the converter reads train_val itself and reports the problem
    if not written.startswith("/"):
        return None, labels
    posix = PurePosixPath(written)
    for candidate in (Path(written), folder.parent / posix.parent.name / posix.name):
        if candidate.is_file():
            dataset_labels = candidate.parent / "labels.txt"
            if labels is None and dataset_labels.is_file():
                labels = dataset_labels
            return candidate, labels
    return None, labels


def _digits_layout(caffemodel: Path, names: set[str]) -> bool:
    """DIGITS names its snapshots snapshot_iter_N and ships mean.binaryproto and labels.txt."""
    markers = {"mean.binaryproto", "labels.txt", "original.prototxt"}
    return bool(SNAPSHOT_PATTERN.match(caffemodel.name)) and bool(names & markers)


# --- small readers -----------------------------------------------------------------


def _read_text(path: Path, what: str) -> str:
    """A text file's content; UTF-8 (with or without BOM), UTF-16 with BOM, else Latin-1, which never fails."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DecoderError(f"cannot read the {what}: {exc.strerror or exc}", path) from exc
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with BOM: Notepad's "Unicode"
        with contextlib.suppress(UnicodeDecodeError):
            return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_labels(path: Path, *, digits: bool = False) -> tuple[str, ...]:
    """Label i is the i-th non-empty line, stripped.

    ``digits``: DIGITS's own labels.txt, whose text is kept exactly as DIGITS shows it.
    Otherwise two common layouts lose their bookkeeping prefix (the label is what a person
    reads): ImageNet's synset_words.txt ("n01440764 tench, Tinca tinca" -> "tench, Tinca
    tinca": the WordNet id goes, every name of the synset stays, as some first names repeat,
    e.g. two synsets called "crane"), and files whose every line is numbered in order from 0
    or 1 ("0 zero" -> "zero"). Anything else is kept as written.
    """
    text = _read_text(path, "labels file")
    stripped = (line.strip(_PY2_WHITESPACE) for line in text.split("\n"))
    labels = tuple(line for line in stripped if line)
    if not labels:
        raise DecoderError("the labels file is empty (DIGITS writes one label per line)", path)
    return labels if digits else _without_prefixes(labels)


def _without_prefixes(labels: tuple[str, ...]) -> tuple[str, ...]:
    """Labels without synset ids or line numbers, when EVERY line has one (see :func:`read_labels`)."""
    synsets = [_SYNSET_LINE.match(label) for label in labels]
    if all(synsets):
        return tuple(match.group(1).strip() for match in synsets if match)
    numbered = [_NUMBERED_LINE.match(label) for label in labels]
    if all(numbered):
        numbers = [int(match.group(1)) for match in numbered if match]
        if numbers in (list(range(len(labels))), list(range(1, len(labels) + 1))):
            return tuple(match.group(2).strip() for match in numbered if match)
    return labels


def read_info(path: Path) -> dict[str, Any]:
    """info.json of a DIGITS archive, as a dict."""
    text = _read_text(path, "info.json")
    if not text.strip():
        raise DecoderError("info.json is empty", path)
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecoderError(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", path) from exc
    except RecursionError as exc:
        raise DecoderError("not valid JSON (nested too deeply)", path) from exc
    if not isinstance(info, dict):
        raise DecoderError(f"expected a JSON object, found {type(info).__name__}", path)
    return info


def read_train_transform(path: Path) -> TrainTransform:
    """The data layer's ``transform_param`` of a train_val prototxt, TEST phase preferred.

    DIGITS validates with the TEST-phase layer and, like Caffe, writes the same mean there;
    when only a TRAIN layer carries a transform, that is the one. Fields our schema does not
    know (other Caffe forks) are skipped: only ``transform_param`` matters here.
    """
    if not _read_text(path, "train_val prototxt").strip():
        # Silently reading "no transform" here would mean "no mean": wrong answers, no error.
        raise DecoderError("the train_val prototxt is empty", path)
    net = read_prototxt(path, allow_unknown_field=True)
    candidates = sorted(_data_transforms(net), key=lambda item: item[0])
    if not candidates:
        return TrainTransform(mean_kind="none", mean_values=(), crop_size=0, scale=1.0, mean_file="")
    _, name, param, data_type = candidates[0]
    mean_file = param.mean_file if param.HasField("mean_file") else ""
    if mean_file and len(param.mean_value):
        raise DecoderError(f"data layer {name!r} sets both mean_file and mean_value, which Caffe refuses", path)
    kind = "image" if mean_file else "pixel" if len(param.mean_value) else "none"
    return TrainTransform(
        mean_kind=kind,
        mean_values=tuple(_as_written(v) for v in param.mean_value),
        crop_size=int(param.crop_size),
        scale=_as_written(param.scale),
        mean_file=mean_file,
        data_type=data_type,
    )


def _data_transforms(net: Any) -> Iterator[tuple[tuple[int, int], str, Any, str]]:
    """(rank, layer name, TransformationParameter, layer type) of every layer with a transform, any format."""
    index = 0
    for layer in net.layer:
        if (param := _transform_of(layer)) is not None:
            phase = layer.phase if layer.HasField("phase") else None
            yield (_phase_rank(layer.include, layer.exclude, phase), index), layer.name, param, layer.type
            index += 1
    for layer in net.layers:
        rank = _phase_rank(layer.include, layer.exclude, None)
        if (param := _transform_of(layer)) is not None:
            yield (rank, index), layer.name, param, V1_TYPE_NAMES.get(layer.type, "")
            index += 1
        elif layer.HasField("layer") and _v0_has_transform(layer.layer):
            v0 = layer.layer
            param = caffe_pb2.TransformationParameter(scale=v0.scale, crop_size=v0.cropsize)
            if v0.HasField("meanfile"):
                param.mean_file = v0.meanfile
            yield (rank, index), v0.name, param, "ImageData" if v0.type == "images" else "Data"
            index += 1


#: Data layer parameters that carried scale/mean_file/crop_size before transform_param existed (2014).
_DEPRECATED_TRANSFORM_HOLDERS = ("data_param", "image_data_param", "window_data_param")


def _transform_of(layer: Any) -> Any | None:
    """A layer's transform_param, with the deprecated data-layer fields folded in as Caffe's upgrade does.

    upgrade_proto.cpp UpgradeNetDataTransformation moves ``scale``, ``mean_file``,
    ``crop_size`` and ``mirror`` of data_param / image_data_param / window_data_param into
    transform_param; old V1 "prediction" prototxts still write them there.
    """
    param = caffe_pb2.TransformationParameter()
    found = layer.HasField("transform_param")
    if found:
        param.CopyFrom(layer.transform_param)
    for holder_name in _DEPRECATED_TRANSFORM_HOLDERS:
        if holder_name not in layer.DESCRIPTOR.fields_by_name or not layer.HasField(holder_name):
            continue
        holder = getattr(layer, holder_name)
        for name in ("scale", "mean_file", "crop_size"):
            if holder.HasField(name):
                setattr(param, name, getattr(holder, name))
                found = True
    return param if found else None


def _v0_has_transform(v0: Any) -> bool:
    """V0 data layers carried scale/meanfile/cropsize themselves (folded later into transform_param)."""
    return any(v0.HasField(f) for f in ("meanfile", "cropsize", "scale")) or v0.type in ("data", "images")


def _phase_rank(include: Any, exclude: Any, phase: int | None) -> int:
    """0: a TEST-phase layer; 1: a layer of both phases; 2: a TRAIN-only layer."""
    test = caffe_pb2.TEST
    if phase is not None:
        return 0 if phase == test else 2
    if any(rule.HasField("phase") and rule.phase == test for rule in include):
        return 0
    if any(rule.HasField("phase") for rule in include):
        return 2
    if any(rule.HasField("phase") and rule.phase == test for rule in exclude):
        return 2
    return 1


def _as_written(value: float) -> float:
    """A float32 field as its shortest decimal, so 0.0125 reads back as 0.0125, not 0.012500000186."""
    return float(str(np.float32(value)))
