"""Safe extraction of model archives that come from strangers.

A DIGITS "Download Model" archive is a flat tar/zip of a handful of regular files. People
pass such archives around (forums, issue trackers, shared drives), so we treat every archive
as hostile: a member may try to escape the destination (``../``, absolute paths, links), be
a device or FIFO, or decompress to far more than it claims (a bomb). Python's own
``extractall`` is not safe enough for that on every supported version, so we walk the
members ourselves, refuse anything that is not a plain file or folder with a plain relative
name, and count the bytes we actually write. Every problem becomes a one-line
:class:`~decoder.errors.DecoderError` naming the archive; on refusal nothing we wrote is left
behind.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import itertools
import lzma
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from decoder.errors import DecoderError

# Names DIGITS (and people) give model archives; checked case-insensitively.
ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz", ".zip")

# A member (or the whole archive) decompressing to more than this many times its stored
# size is a bomb: real weights compress ~1.1x, means and prototxts < 20x. Deflate tops out
# near 1032x, which is exactly what bombs use. Tiny files may compress absurdly (a mean of
# constant pixels), so the rule only applies beyond RATIO_FLOOR bytes.
MAX_RATIO = 100
RATIO_FLOOR = 1 << 20

_CHUNK = 1 << 20
_BLOCKSIZE = tarfile.BLOCKSIZE

# tarfile reads a pax extended header or a GNU long name/link record into memory in ONE
# read of the size that record's header declares; a few kilobytes of gzip of zeros could
# then make it allocate gigabytes before any member is seen. Such records hold a file
# name or a few attributes, so any single read beyond this is refused (member data is
# read in _CHUNK pieces, well below it).
MAX_TAR_READ = 16 << 20

# What the decompressors and archive readers raise on corrupt, truncated or unsupported
# input. Writing errors are handled separately so a full disk is not called "corrupt".
_READ_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    ValueError,
    NotImplementedError,
    UnicodeError,
    struct.error,
)


def is_archive(path: Path) -> bool:
    """Whether ``path`` should be treated as an archive: by its name, or by its first bytes.

    The name wins so that a non-archive named ``model.tar.gz`` is reported as a broken
    archive rather than as "not a folder". The content sniff catches DIGITS downloads that
    a browser saved without an extension.
    """
    path = Path(path)
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return not path.is_dir()
    return path.is_file() and _sniff(path) is not None


def extract_archive(
    archive: Path,
    destination: Path,
    *,
    max_member_bytes: int = 2 << 30,
    max_total_bytes: int = 8 << 30,
    max_members: int = 10_000,
) -> list[Path]:
    """Extract the regular files of ``archive`` below ``destination``; return their paths.

    Folders inside the archive are recreated (so a member ``model/deploy.prototxt`` lands in
    ``destination/model/``). Anything else is refused and the whole extraction undone:
    links, devices, FIFOs, names that are absolute or climb out with ``..``, duplicate
    names, more than ``max_members`` members, a member larger than ``max_member_bytes``
    (declared or actually streamed), more than ``max_total_bytes`` in total, or a
    decompression ratio above :data:`MAX_RATIO`.
    """
    archive = Path(archive)
    destination = Path(destination)
    limits = _Limits(max_member_bytes, max_total_bytes, max_members, _stored_size(archive))
    destination.mkdir(parents=True, exist_ok=True)
    writer = _Writer(archive, destination.resolve(), limits)
    kind = _sniff(archive)
    if kind is None and archive.name.lower().endswith(".zip"):
        kind = "zip"
    try:
        if kind == "zip":
            _extract_zip(archive, writer)
        else:
            _extract_tar(archive, writer)
    except BaseException as exc:
        writer.undo()
        if isinstance(exc, _READ_ERRORS):
            raise _corrupt(archive, exc) from exc
        raise
    return list(writer.files)


# --- format detection ---------------------------------------------------------------


def _sniff(path: Path) -> str | None:
    """The archive kind the first bytes announce ("zip" or "tar"), or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_BLOCKSIZE)
    except OSError:
        return None
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    compressed = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
    if head.startswith(compressed) or head[257:262] == b"ustar":
        return "tar"
    return None


def _stored_size(archive: Path) -> int:
    try:
        return archive.stat().st_size
    except OSError as exc:
        raise DecoderError(f"cannot read archive: {exc.strerror or exc}", archive) from exc


def _corrupt(archive: Path, exc: BaseException) -> DecoderError:
    detail = str(exc).strip() or type(exc).__name__
    if isinstance(exc, tarfile.ReadError) and "could not be opened successfully" in detail:
        detail = "not a tar archive (plain, gzip, bzip2 or xz) nor a zip archive"
    return DecoderError(f"corrupt, truncated or not an archive: {detail}", archive)


# --- member names -------------------------------------------------------------------


def _safe_parts(archive: Path, name: str) -> tuple[str, ...]:
    """The path components of a member name, or a refusal if it could leave the destination.

    Backslashes count as separators too: Windows zip tools write them, and ``..\\`` must not
    slip through as an ordinary character on one platform and a separator on another.
    """
    if "\x00" in name:
        raise DecoderError(f"refused: member name {name!r} contains a NUL byte", archive)
    unified = name.replace("\\", "/")
    if unified.startswith("/") or PurePosixPath(unified).is_absolute():
        raise DecoderError(f"refused: member {name!r} has an absolute path", archive)
    parts = tuple(part for part in unified.split("/") if part not in ("", "."))
    if parts and len(parts[0]) >= 2 and parts[0][1] == ":":
        raise DecoderError(f"refused: member {name!r} has a drive letter (absolute Windows path)", archive)
    if ".." in parts:
        raise DecoderError(f"refused: member {name!r} climbs out of the archive with '..'", archive)
    return parts


# --- writing ------------------------------------------------------------------------


@dataclass
class _Limits:
    member: int
    total: int
    members: int
    stored: int


@dataclass
class _Writer:
    """Writes members below ``root``, enforcing the byte limits while streaming.

    It remembers what it created so :meth:`undo` can leave ``root`` as it found it.
    """

    archive: Path
    root: Path
    limits: _Limits
    files: list[Path] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)
    seen: set[tuple[str, ...]] = field(default_factory=set)
    written: int = 0
    members: int = 0

    def count_member(self) -> None:
        self.members += 1
        if self.members > self.limits.members:
            raise DecoderError(f"refused: more than {self.limits.members} members", self.archive)

    def check_declared(self, name: str, size: int, declared_total: int) -> None:
        if size > self.limits.member:
            raise DecoderError(
                f"refused: member {name!r} declares {size} bytes, over the {self.limits.member}-byte limit",
                self.archive,
            )
        if declared_total > self.limits.total:
            raise DecoderError(
                f"refused: members declare {declared_total} bytes in total, over the {self.limits.total}-byte limit",
                self.archive,
            )

    def make_dir(self, parts: tuple[str, ...]) -> Path:
        """Create ``root/parts`` one level at a time, never through a symlink."""
        current = self.root
        shown = "/".join(parts)
        try:
            for part in parts:
                current = current / part
                if current.is_symlink():
                    raise DecoderError(f"refused: {shown!r} would pass through a symbolic link", self.archive)
                if not current.exists():
                    current.mkdir()
                    self.dirs.append(current)
                elif not current.is_dir():
                    raise DecoderError(f"refused: {shown!r} is both a file and a folder", self.archive)
        except OSError as exc:
            raise DecoderError(f"cannot create folder {shown!r}: {exc.strerror or exc}", self.archive) from exc
        return current

    def write_file(self, name: str, parts: tuple[str, ...], source: IO[bytes], declared: int) -> None:
        """Stream ``source`` to ``root/parts``, stopping as soon as a byte limit is crossed."""
        if not parts:
            raise DecoderError(f"refused: member {name!r} has an empty name", self.archive)
        if parts in self.seen:
            raise DecoderError(f"refused: member {name!r} appears twice", self.archive)
        self.seen.add(parts)
        parent = self.make_dir(parts[:-1])
        target = parent / parts[-1]
        if not str(target.resolve(strict=False)).startswith(str(self.root) + os.sep):
            raise DecoderError(f"refused: member {name!r} would land outside the destination", self.archive)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(target, flags, 0o644)
        except OSError as exc:
            raise DecoderError(f"cannot write member {name!r}: {exc.strerror or exc}", self.archive) from exc
        self.files.append(target)
        size = 0
        with os.fdopen(fd, "wb") as out:
            while True:
                chunk = source.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                self.written += len(chunk)
                self._check_streamed(name, size, declared)
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise DecoderError(f"cannot write member {name!r}: {exc.strerror or exc}", self.archive) from exc

    def _check_streamed(self, name: str, size: int, declared: int) -> None:
        if size > self.limits.member:
            raise DecoderError(f"refused: member {name!r} exceeds the {self.limits.member}-byte limit", self.archive)
        if size > declared:
            raise DecoderError(
                f"refused: member {name!r} holds more bytes than the {declared} it declares", self.archive
            )
        if self.written > self.limits.total:
            raise DecoderError(f"refused: the archive expands beyond the {self.limits.total}-byte limit", self.archive)
        if self.written > RATIO_FLOOR and self.written > MAX_RATIO * max(self.limits.stored, 1):
            raise DecoderError(
                f"refused: the archive expands more than {MAX_RATIO}x its size (a decompression bomb)", self.archive
            )

    def undo(self) -> None:
        """Remove what this extraction created, newest first."""
        for path in reversed(self.files):
            path.unlink(missing_ok=True)
        for path in reversed(self.dirs):
            with contextlib.suppress(OSError):
                path.rmdir()


# --- tar ----------------------------------------------------------------------------


def _extract_tar(archive: Path, writer: _Writer) -> None:
    with (
        open(archive, "rb") as raw,
        _decompressed(raw, archive, writer) as stream,
        _open_tar(stream, archive) as tar,
    ):
        _extract_tar_members(archive, tar, writer)


def _open_tar(stream: _TarStream, archive: Path) -> tarfile.TarFile:
    """``tarfile`` over the already decompressed stream; names what the data turned out to be."""
    try:
        return tarfile.open(fileobj=stream, mode="r:")  # type: ignore[arg-type]
    except tarfile.ReadError as exc:
        kind = f"{stream.compression} data, but" if stream.compression else "it is"
        raise DecoderError(
            f"corrupt, truncated or not an archive: {kind} not a tar archive ({exc}) nor a zip archive", archive
        ) from exc


def _extract_tar_members(archive: Path, tar: tarfile.TarFile, writer: _Writer) -> None:
    data_filter = getattr(tarfile, "data_filter", None)
    declared_total = 0
    for member in _tar_members(tar, writer):
        parts = _safe_parts(archive, member.name)
        _check_tar_type(archive, member)
        if data_filter is not None:
            try:
                data_filter(member, str(writer.root))
            except tarfile.FilterError as exc:
                raise DecoderError(f"refused: member {member.name!r}: {exc}", archive) from exc
        if member.isdir():
            writer.make_dir(parts)
            continue
        declared_total += member.size
        writer.check_declared(member.name, member.size, declared_total)
        source = tar.extractfile(member)
        if source is None:  # pragma: no cover - only links and specials lack data, refused above
            raise DecoderError(f"refused: member {member.name!r} has no data", archive)
        with source:
            writer.write_file(member.name, parts, source, member.size)
    _check_tar_end(archive, tar)


class _TarStream:
    """The decompressed bytes of a tar archive, as ``tarfile`` reads them, every read checked.

    Opening the decompressor ourselves (instead of ``tarfile``'s ``r:*``) lets us see each
    read: one larger than :data:`MAX_TAR_READ` can only be a metadata record that lies about
    its size, and the running total (forward seeks included) is held to the archive's byte
    and ratio limits even for bytes that are never written, such as padding and headers.
    """

    def __init__(self, source: IO[bytes], compression: str, archive: Path, writer: _Writer) -> None:
        self.source = source
        self.compression = compression  # "" for a plain tar
        self.archive = archive
        self.writer = writer
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > MAX_TAR_READ:
            shown = "everything" if size is None or size < 0 else f"{size} bytes"
            raise DecoderError(
                f"refused: a tar header asks to read {shown} at once (over {MAX_TAR_READ}; "
                "a forged long-name or pax record?)",
                self.archive,
            )
        data = self.source.read(size)
        self._account(len(data))
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self.source.tell()
        target = offset if whence == os.SEEK_SET else position + offset if whence == os.SEEK_CUR else None
        if target is not None and target > position:
            self._account(target - position)  # decompressors skip forward by decompressing
        return self.source.seek(offset, whence)

    def tell(self) -> int:
        return self.source.tell()

    def _account(self, count: int) -> None:
        self.consumed += count
        limits = self.writer.limits
        # Headers and padding come on top of the member bytes: allow a block per member and
        # a little slack, but no more.
        if self.consumed > limits.total + (limits.members + 16) * 3 * _BLOCKSIZE:
            raise DecoderError(f"refused: the archive expands beyond the {limits.total}-byte limit", self.archive)
        if self.consumed > RATIO_FLOOR and self.consumed > MAX_RATIO * max(limits.stored, 1):
            raise DecoderError(
                f"refused: the archive expands more than {MAX_RATIO}x its size (a decompression bomb)", self.archive
            )


@contextlib.contextmanager
def _decompressed(raw: IO[bytes], archive: Path, writer: _Writer) -> Iterator[_TarStream]:
    """A :class:`_TarStream` over ``raw``, decompressed as its first bytes announce."""
    head = raw.read(6)
    raw.seek(0)
    openers: dict[bytes, tuple[str, Callable[[IO[bytes]], IO[bytes]]]] = {
        b"\x1f\x8b": ("gzip", lambda f: gzip.GzipFile(fileobj=f, mode="rb")),
        b"BZh": ("bzip2", bz2.BZ2File),
        b"\xfd7zXZ\x00": ("xz", lzma.LZMAFile),
    }
    for magic, (compression, opener) in openers.items():
        if head.startswith(magic):
            with opener(raw) as source:
                yield _TarStream(source, compression, archive, writer)
            return
    yield _TarStream(raw, "", archive, writer)


def _tar_members(tar: tarfile.TarFile, writer: _Writer) -> Iterator[tarfile.TarInfo]:
    """Members one at a time, counted before the next header is even read."""
    while True:
        member = tar.next()
        if member is None:
            return
        writer.count_member()
        yield member


def _check_tar_type(archive: Path, member: tarfile.TarInfo) -> None:
    name = member.name
    if member.issym():
        raise DecoderError(f"refused: member {name!r} is a symbolic link (to {member.linkname!r})", archive)
    if member.islnk():
        raise DecoderError(f"refused: member {name!r} is a hard link (to {member.linkname!r})", archive)
    if member.ischr() or member.isblk():
        raise DecoderError(f"refused: member {name!r} is a device file", archive)
    if member.isfifo():
        raise DecoderError(f"refused: member {name!r} is a FIFO", archive)
    if not (member.isreg() or member.isdir()):
        raise DecoderError(f"refused: member {name!r} has an unsupported type {member.type!r}", archive)


def _check_tar_end(archive: Path, tar: tarfile.TarFile) -> None:
    """Tell a clean end from a damaged header, which ``tarfile`` silently treats as the end.

    A proper archive ends in zero blocks (or, tolerated, simply stops); anything else where
    the next header should be means the archive is damaged and members may be missing.
    """
    fileobj = tar.fileobj
    if fileobj is None:  # pragma: no cover - tarfile always has one while open
        return
    fileobj.seek(tar.offset)
    block = fileobj.read(_BLOCKSIZE)
    if block and block.count(0) != len(block):
        raise DecoderError(f"corrupt archive: damaged member header at byte {tar.offset}", archive)


# --- zip ----------------------------------------------------------------------------


def _extract_zip(archive: Path, writer: _Writer) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > writer.limits.members:
            raise DecoderError(f"refused: {len(infos)} members, more than {writer.limits.members}", archive)
        _check_zip_overlap(archive, infos)
        declared_total = 0
        plan: list[tuple[zipfile.ZipInfo, tuple[str, ...], bool]] = []
        for info in infos:
            parts = _safe_parts(archive, info.filename)
            is_dir = _zip_is_dir(archive, info)
            if not is_dir:
                _check_zip_member(archive, info)
                declared_total += info.file_size
                writer.check_declared(info.filename, info.file_size, declared_total)
            plan.append((info, parts, is_dir))
        # Everything is checked before the first byte is written.
        for info, parts, is_dir in plan:
            if is_dir:
                writer.make_dir(parts)
                continue
            with zf.open(info) as source:
                writer.write_file(info.filename, parts, source, info.file_size)


def _check_zip_member(archive: Path, info: zipfile.ZipInfo) -> None:
    if info.flag_bits & 0x1:
        raise DecoderError(f"refused: member {info.filename!r} is encrypted", archive)
    if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise DecoderError(
            f"refused: member {info.filename!r} claims {info.file_size} bytes from {info.compress_size} "
            f"(over {MAX_RATIO}x: a decompression bomb)",
            archive,
        )


def _zip_unix_mode(info: zipfile.ZipInfo) -> int:
    return (info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0


def _zip_is_dir(archive: Path, info: zipfile.ZipInfo) -> bool:
    """Whether a zip member is a folder; refuses links and special files (Unix mode bits)."""
    mode = _zip_unix_mode(info)
    name = info.filename
    if stat.S_ISLNK(mode):
        raise DecoderError(f"refused: member {name!r} is a symbolic link", archive)
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise DecoderError(f"refused: member {name!r} is a device file", archive)
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise DecoderError(f"refused: member {name!r} is a FIFO or socket", archive)
    return name.endswith("/") or stat.S_ISDIR(mode)


def _check_zip_overlap(archive: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse members whose data overlap: the trick behind non-recursive zip bombs.

    The local header is at least 30 bytes plus the name, so a member whose data would run
    into the next member's header shares bytes with it.
    """
    ordered = sorted(infos, key=lambda info: info.header_offset)
    for current, following in itertools.pairwise(ordered):
        encoding = "utf-8" if current.flag_bits & 0x800 else "cp437"
        try:
            name_bytes = len(current.orig_filename.encode(encoding))
        except UnicodeEncodeError:
            name_bytes = 0  # cannot know; the header alone is still a lower bound
        end = current.header_offset + 30 + name_bytes + current.compress_size
        if end > following.header_offset:
            raise DecoderError(
                f"refused: members {current.filename!r} and {following.filename!r} overlap (a zip bomb trick)", archive
            )
