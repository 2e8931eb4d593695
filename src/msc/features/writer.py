"""Streaming arrays into .npy files item by item, so featurize's memory stays one batch deep."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msc.core.errors import UserError


class NpyWriter:
    """Streams items into a .npy file in C order, so memory stays one batch deep.

    An item is the array's trailing ``item_ndim`` dimensions: a row of ``text_pooled`` or one
    (row, view) of ``aug_pooled``. (A memmap would keep every written page mapped until the end.)
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype, item_ndim: int):
        self.path, self.dtype = path, np.dtype(dtype)
        self.item_shape = shape[len(shape) - item_ndim :]
        self.expected = int(np.prod(shape[: len(shape) - item_ndim]))
        self.item_bytes = int(np.prod(self.item_shape)) * self.dtype.itemsize
        self.written = self.next_item = 0
        self.handle = path.open("wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self.handle, header)
        self.header_bytes = self.handle.tell()

    def write(self, first: int, block: np.ndarray) -> None:
        """Write items ``first .. first + len(block) - 1``, (b, *item_shape)."""
        assert block.shape[1:] == self.item_shape, (block.shape, self.item_shape)
        with np.errstate(over="ignore"):  # an overflow becomes infinity, refused below with a sentence
            values = np.ascontiguousarray(block, dtype=self.dtype)
        if self.dtype.kind == "f" and not np.isfinite(values).all():  # also what overflows float16 on the way in
            raise UserError(f"the backbone computed features that are NaN or too large for float16 for "
                            f"{self.path.name}; nothing was cached. In fp16 its activations can overflow: set "
                            "model.precision: fp32 (or bf16)")
        self.handle.seek(self.header_bytes + first * self.item_bytes)
        self.handle.write(values.tobytes())
        self.written += len(block)

    def append(self, block: np.ndarray) -> None:
        """Write the next items in order."""
        self.write(self.next_item, block)
        self.next_item += len(block)

    def close(self) -> None:
        self.handle.close()
        if self.written != self.expected:
            raise RuntimeError(f"{self.path}: wrote {self.written} items, expected {self.expected}")
