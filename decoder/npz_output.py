"""A .npz of arrays stacked batch by batch, written atomically and with flat memory.

``decode run`` stacks every output of a model over thousands of images; a detector's
outputs are ~140 KB per image, so holding them all for ``np.savez`` would take gigabytes.
Here each array's rows go to a temporary raw file as batches arrive; at the end the .npz
(an uncompressed zip of .npy files, what ``np.load`` reads) is assembled from them under a
temporary name in the destination folder and renamed into place. An interrupted run
leaves neither a half-written .npz nor its temporary files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np

from decoder.errors import DecoderError


class StackedNpzWriter:
    """Append (rows, ...) batches per name; :meth:`commit` writes ``output`` with each name stacked."""

    def __init__(self, output: str | os.PathLike[str]) -> None:
        self.output = Path(output)
        parent = self.output.parent if str(self.output.parent) else Path(".")
        if self.output.is_dir():
            raise DecoderError("is a directory; give a file name ending in .npz", self.output)
        if not parent.is_dir():
            raise DecoderError("the output folder does not exist", parent)
        try:
            self.folder = Path(tempfile.mkdtemp(prefix=f".{self.output.name}.", dir=parent))
        except OSError as exc:
            raise DecoderError(f"cannot write in the output folder ({exc.strerror or exc})", parent) from None
        self.rows = 0
        self._files: dict[str, IO[bytes]] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._dtypes: dict[str, np.dtype] = {}

    def row_shape(self, name: str) -> tuple[int, ...]:
        """The shape of one row (one image) of ``name``, as appended."""
        return self._shapes[name]

    def append(self, arrays: dict[str, np.ndarray]) -> None:
        """One batch: every name's array has the same number of rows, and each name keeps its row shape."""
        counts = {len(a) for a in arrays.values()}
        if len(counts) != 1:
            raise DecoderError(f"internal: arrays of one batch have different row counts {sorted(counts)}")
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            if name not in self._files:
                if self.rows:
                    raise DecoderError(f"internal: {name!r} first appears after {self.rows} rows")
                self._files[name] = open(self.folder / f"{len(self._files)}.raw", "wb")  # noqa: SIM115
                self._shapes[name], self._dtypes[name] = array.shape[1:], array.dtype
            elif array.shape[1:] != self._shapes[name] or array.dtype != self._dtypes[name]:
                raise DecoderError(
                    f"output {name!r} changed from {list(self._shapes[name])} to {list(array.shape[1:])} per image "
                    "between batches; cannot stack it"
                )
            self._files[name].write(array.tobytes())
        self.rows += counts.pop()

    def commit(self, extra: dict[str, np.ndarray] | None = None) -> None:
        """Assemble the .npz beside ``output`` (with ``extra`` arrays, whole) and rename it into place."""
        for handle in self._files.values():
            handle.close()
        temporary = self.folder / "out.npz"
        try:
            with zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                for index, name in enumerate(self._files):
                    header = {
                        "descr": np.lib.format.dtype_to_descr(self._dtypes[name]),
                        "fortran_order": False,
                        "shape": (self.rows, *self._shapes[name]),
                    }
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as entry:
                        np.lib.format.write_array_header_1_0(entry, header)
                        with open(self.folder / f"{index}.raw", "rb") as raw:
                            shutil.copyfileobj(raw, entry, 1 << 20)
                for name, array in (extra or {}).items():
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as entry:
                        np.lib.format.write_array(entry, np.asanyarray(array), allow_pickle=False)
            os.replace(temporary, self.output)
        except OSError as exc:
            raise DecoderError(
                f"cannot write the .npz ({exc.strerror or exc}); nothing was written", self.output
            ) from None
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the temporary files (the output is untouched)."""
        for handle in self._files.values():
            handle.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> StackedNpzWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.discard()
