"""Safe extraction: every archive kind DIGITS writes, and the hostile ones strangers could send.

Every archive is built here, in the test's own folder. Hostile cases put a harmless member
first, so "refused" also proves the partial extraction was undone.
"""

from __future__ import annotations

import gzip
import io
import stat
import struct
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decoder.archive import MAX_RATIO, RATIO_FLOOR, extract_archive, is_archive
from decoder.errors import DecoderError

FLAT = {
    "deploy.prototxt": b'input: "data"\n',
    "snapshot_iter_42.caffemodel": bytes(range(256)) * 4,
    "labels.txt": b"cat\ndog\n",
}

TAR_MODES = {".tar": "w", ".tar.gz": "w:gz", ".tgz": "w:gz", ".tar.bz2": "w:bz2", ".tar.xz": "w:xz"}


def _tar_regular(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz", extra: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            _tar_regular(tar, name, data)
        for info in extra:
            tar.addfile(info)
    return path


def make_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def assert_refused(archive: Path, destination: Path, *words: str, **limits: int) -> DecoderError:
    """Extraction fails naming the archive and the problem, leaving nothing behind."""
    with pytest.raises(DecoderError) as caught:
        extract_archive(archive, destination, **limits)
    message = str(caught.value)
    assert str(archive) in message
    for word in words:
        assert word in message.lower(), message
    assert list(destination.rglob("*")) == [], "a refused archive left files behind"
    return caught.value


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --- what DIGITS writes ---------------------------------------------------------


@pytest.mark.parametrize("suffix", sorted(TAR_MODES))
def test_tar_kinds_extract_flat_files(tmp_path: Path, suffix: str) -> None:
    archive = make_tar(tmp_path / f"model{suffix}", FLAT, TAR_MODES[suffix])
    out = tmp_path / "out"
    extracted = extract_archive(archive, out)
    assert sorted(p.name for p in extracted) == sorted(FLAT)
    assert files_under(out) == FLAT
    assert is_archive(archive)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_zip_extracts_flat_files(tmp_path: Path, compression: int) -> None:
    archive = make_zip(tmp_path / "model.zip", FLAT, compression)
    out = tmp_path / "out"
    assert sorted(p.name for p in extract_archive(archive, out)) == sorted(FLAT)
    assert files_under(out) == FLAT


def test_top_level_folder_and_dot_prefixes_are_kept(tmp_path: Path) -> None:
    members = {"./job/deploy.prototxt": b"a", "job/sub/labels.txt": b"b"}
    archive = make_tar(
        tmp_path / "m.tgz", members, extra=[special("./job", tarfile.DIRTYPE), special(".", tarfile.DIRTYPE)]
    )
    out = tmp_path / "out"
    extract_archive(archive, out)
    assert files_under(out) == {"job/deploy.prototxt": b"a", "job/sub/labels.txt": b"b"}


def test_zip_with_folder_entries(tmp_path: Path) -> None:
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model/", b"")
        zf.writestr("model/deploy.prototxt", b"x")
    out = tmp_path / "out"
    assert [p.relative_to(out).as_posix() for p in extract_archive(archive, out)] == ["model/deploy.prototxt"]


def test_is_archive_by_name_or_content(tmp_path: Path) -> None:
    saved_without_extension = make_tar(tmp_path / "download", FLAT)
    assert is_archive(saved_without_extension)
    assert is_archive(make_zip(tmp_path / "download2", FLAT))
    text = tmp_path / "deploy.prototxt"
    text.write_text('input: "data"\n')
    assert not is_archive(text)
    (tmp_path / "folder.zip").mkdir()
    assert not is_archive(tmp_path / "folder.zip")
    fake = tmp_path / "fake.TAR.GZ"
    fake.write_text("hello")
    assert is_archive(fake)  # the name says archive: it will be reported as a broken one


# --- hostile tar ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("../evil.txt", ("..",)),
        ("job/../../evil.txt", ("..",)),
        ("/tmp/evil.txt", ("absolute",)),
        ("..\\evil.txt", ("..",)),
        ("C:/evil.txt", ("drive",)),
    ],
)
def test_tar_names_that_escape_are_refused(tmp_path: Path, name: str, words: tuple[str, ...]) -> None:
    archive = make_tar(tmp_path / "bad.tar.gz", {"labels.txt": b"ok", name: b"pwned"})
    assert_refused(archive, tmp_path / "out", *words)
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize(
    ("info", "word"),
    [
        (special("link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (special("link", tarfile.SYMTYPE, "labels.txt"), "symbolic link"),
        (special("hard", tarfile.LNKTYPE, "labels.txt"), "hard link"),
        (special("tty", tarfile.CHRTYPE), "device"),
        (special("disk", tarfile.BLKTYPE), "device"),
        (special("pipe", tarfile.FIFOTYPE), "fifo"),
    ],
)
def test_tar_links_and_special_files_are_refused(tmp_path: Path, info: tarfile.TarInfo, word: str) -> None:
    archive = make_tar(tmp_path / "bad.tar", {"labels.txt": b"ok"}, "w", extra=[info])
    assert_refused(archive, tmp_path / "out", word)


def test_symlink_then_write_through_it_is_refused(tmp_path: Path) -> None:
    """The classic: a symlink to outside, then a file "through" it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    with tarfile.open(tmp_path / "bad.tar", "w") as tar:
        tar.addfile(special("escape", tarfile.SYMTYPE, str(outside)))
        _tar_regular(tar, "escape/evil.txt", b"pwned")
    assert_refused(tmp_path / "bad.tar", tmp_path / "out", "symbolic link")
    assert list(outside.iterdir()) == []


def test_tar_member_over_the_size_limit(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "big.tgz", {"labels.txt": b"ok", "weights.caffemodel": b"x" * 5000})
    assert_refused(archive, tmp_path / "out", "5000", "limit", max_member_bytes=4096)


def test_tar_total_over_the_limit(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "big.tgz", {f"f{i}": b"x" * 1000 for i in range(5)})
    assert_refused(archive, tmp_path / "out", "total", max_total_bytes=4500)


def test_tar_with_too_many_members(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "many.tar", {f"f{i}": b"" for i in range(12)}, "w")
    assert_refused(archive, tmp_path / "out", "more than 10 members", max_members=10)
    extract_archive(archive, tmp_path / "fine", max_members=12)


def test_tar_gz_bomb_is_stopped_while_streaming(tmp_path: Path) -> None:
    """Declared sizes are within limits; the bytes actually produced give the bomb away."""
    size = 4 * RATIO_FLOOR
    archive = make_tar(tmp_path / "bomb.tar.gz", {"labels.txt": b"ok", "zeros.caffemodel": bytes(size)})
    assert size > MAX_RATIO * archive.stat().st_size  # the premise: this really is a bomb
    assert_refused(archive, tmp_path / "out", "bomb")


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE])
def test_forged_metadata_record_size(tmp_path: Path, kind: bytes) -> None:
    """A long-name or pax record of 32 MiB of zeros: tarfile reads such a record in ONE read, into memory.

    The zeros are really there (gzip makes them ~32 KB), so only a bound on single reads stops it.
    """
    record = tarfile.TarInfo("././@LongLink")
    record.type = kind
    record.size = 32 << 20
    archive = tmp_path / "forged.tar.gz"
    with gzip.open(archive, "wb", compresslevel=1) as out:
        out.write(record.tobuf(format=tarfile.GNU_FORMAT))
        for _ in range(32):
            out.write(bytes(1 << 20))
    assert_refused(archive, tmp_path / "out", "at once")


def test_duplicate_member_is_refused(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "dup.tar", "w") as tar:
        _tar_regular(tar, "labels.txt", b"first")
        _tar_regular(tar, "./labels.txt", b"second")
    assert_refused(tmp_path / "dup.tar", tmp_path / "out", "twice")


def test_file_and_folder_of_the_same_name(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "clash.tar", {"model": b"file", "model/deploy.prototxt": b"x"}, "w")
    assert_refused(archive, tmp_path / "out", "model")


# --- hostile zip --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil.txt", "/evil.txt", "a/../../evil.txt", "..\\evil.txt"])
def test_zip_names_that_escape_are_refused(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("labels.txt", b"ok")
        # ZipFile.writestr would sanitise a str name; a ZipInfo keeps it as a stranger wrote it.
        zf.writestr(zipfile.ZipInfo(name), b"pwned")
    assert_refused(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize(
    ("mode", "word"),
    [(stat.S_IFLNK | 0o777, "symbolic link"), (stat.S_IFIFO | 0o644, "fifo"), (stat.S_IFCHR | 0o644, "device")],
)
def test_zip_links_and_special_files_are_refused(tmp_path: Path, mode: int, word: str) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("labels.txt", b"ok")
        info = zipfile.ZipInfo("link")
        info.create_system = 3
        info.external_attr = mode << 16
        zf.writestr(info, b"/etc/passwd")
    assert_refused(archive, tmp_path / "out", word)


def test_zip_member_with_absurd_ratio(tmp_path: Path) -> None:
    size = 2 * RATIO_FLOOR
    archive = make_zip(tmp_path / "bomb.zip", {"labels.txt": b"ok", "zeros.bin": bytes(size)})
    info = zipfile.ZipFile(archive).getinfo("zeros.bin")
    assert info.file_size > MAX_RATIO * info.compress_size  # the premise
    assert_refused(archive, tmp_path / "out", "bomb")


def test_zip_member_over_the_size_limit(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "big.zip", {"labels.txt": b"ok", "w.caffemodel": b"x" * 5000}, zipfile.ZIP_STORED)
    assert_refused(archive, tmp_path / "out", "5000", max_member_bytes=4096)


def test_zip_with_too_many_members(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "many.zip", {f"f{i}": b"" for i in range(12)})
    assert_refused(archive, tmp_path / "out", "12 members", max_members=10)


def _patch_central(data: bytes, name: bytes, offset_in_entry: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of the central directory entry for ``name``."""
    start = 0
    while True:
        start = data.index(b"PK\x01\x02", start)
        name_len = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46 : start + 46 + name_len] == name:
            break
        start += 4
    patched = bytearray(data)
    struct.pack_into(fmt, patched, start + offset_in_entry, value)
    return bytes(patched)


def test_zip_overlapping_members_are_refused(tmp_path: Path) -> None:
    """A non-recursive zip bomb points many entries at the same compressed bytes."""
    archive = make_zip(tmp_path / "overlap.zip", {"a": b"x" * 100, "b": b"x" * 100})
    archive.write_bytes(_patch_central(archive.read_bytes(), b"b", 42, "<I", 0))  # b's local header -> a's
    assert_refused(archive, tmp_path / "out", "overlap")


def test_zip_member_that_lies_about_its_size(tmp_path: Path) -> None:
    """A central directory claiming 10 bytes for 5000: extraction stops and fails, nothing kept."""
    archive = make_zip(tmp_path / "liar.zip", {"labels.txt": b"ok", "w.caffemodel": b"x" * 5000})
    archive.write_bytes(_patch_central(archive.read_bytes(), b"w.caffemodel", 24, "<I", 10))
    assert_refused(archive, tmp_path / "out")


def test_encrypted_zip_member_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "enc.zip", {"labels.txt": b"ok"}, zipfile.ZIP_STORED)
    data = _patch_central(archive.read_bytes(), b"labels.txt", 8, "<H", 0x1)
    archive.write_bytes(data)
    assert_refused(archive, tmp_path / "out", "encrypted")


# --- corrupt and fake archives --------------------------------------------------------


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar.bz2", ".tar", ".zip"])
def test_truncated_archives(tmp_path: Path, suffix: str) -> None:
    big = {"labels.txt": b"ok", "w.caffemodel": bytes(range(256)) * 200}
    name = tmp_path / f"model{suffix}"
    archive = make_zip(name, big) if suffix == ".zip" else make_tar(name, big, TAR_MODES[suffix])
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert_refused(archive, tmp_path / "out")


@pytest.mark.parametrize("name", ["model.tar.gz", "model.tgz", "model.zip", "model.tar", "model.tar.bz2"])
@pytest.mark.parametrize("content", [b"", b"this is not an archive\n", bytes(range(256)) * 8])
def test_non_archives_with_archive_names(tmp_path: Path, name: str, content: bytes) -> None:
    fake = tmp_path / name
    fake.write_bytes(content)
    assert_refused(fake, tmp_path / "out")


def test_damaged_header_in_the_middle_of_a_tar(tmp_path: Path) -> None:
    """tarfile itself would stop quietly at a bad header and return half the members."""
    archive = make_tar(tmp_path / "m.tar", {"a.txt": b"a" * 10, "b.txt": b"b" * 10}, "w")
    data = bytearray(archive.read_bytes())
    data[1024 : 1024 + 100] = b"\xff" * 100  # second header: name and mode garbage, checksum wrong
    archive.write_bytes(bytes(data))
    assert_refused(archive, tmp_path / "out", "header")


def test_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(DecoderError, match=r"nope\.zip"):
        extract_archive(tmp_path / "nope.zip", tmp_path / "out")


# --- mutation fuzzing -----------------------------------------------------------------


def _small_archives() -> dict[str, bytes]:
    members = {"deploy.prototxt": b'input: "data"\n' * 3, "labels.txt": b"0\n1\n", "w.caffemodel": bytes(300)}
    built = {}
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".tar.gz", ".tar", ".zip"):
            path = Path(tmp) / f"m{suffix}"
            (make_zip(path, members) if suffix == ".zip" else make_tar(path, members, TAR_MODES[suffix]))
            built[suffix] = path.read_bytes()
    return built


SMALL = _small_archives()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    suffix=st.sampled_from(sorted(SMALL)),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.none() | st.floats(0, 1),
)
def test_mutated_archives_extract_or_raise_decoder_error(
    suffix: str, edits: list[tuple[float, int]], cut: float | None
) -> None:
    data = bytearray(SMALL[suffix])
    for where, value in edits:
        data[int(where * len(data))] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        archive = root / f"m{suffix}"
        archive.write_bytes(bytes(data))
        out = root / "sandbox" / "out"
        try:
            extracted = extract_archive(archive, out)
        except DecoderError:
            assert list(out.rglob("*")) == []
        else:
            assert all(p.is_file() and out.resolve() in p.resolve().parents for p in extracted)
        escaped = {p.name for p in root.rglob("*")} - {archive.name, "sandbox", "out"}
        assert escaped <= {p.name for p in out.rglob("*")}, "something was written outside the destination"
