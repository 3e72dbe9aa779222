"""dlib's serialization primitives (``dlib/serialize.h``, ``dlib/dnn/tensor.h``), read byte by byte.

The rules (integers, bools, strings, dlib floats, tensors) are described in :mod:`facekit.pretrained.dlib_dat`,
which builds the network reader on :class:`_Reader` and re-exports :class:`DlibFormatError`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

FLOAT_INF, FLOAT_NINF, FLOAT_NAN = 32000, 32001, 32002  # dlib float_details' special exponents
INT_SIZE_MASK, INT_SIGN_BIT, INT_RESERVED_BITS = 0x0F, 0x80, 0x70
MAX_STRING_BYTES = 1 << 16  # layer names are short; a longer "string" means a misread file
MAX_TENSOR_VALUES = 1 << 31


class DlibFormatError(ValueError):
    """A file that is not the dlib network it should be; the message names the file, the byte offset and why."""


class _Reader:
    """Cursor over the bytes of one file; every failure raises :class:`DlibFormatError` with the offset."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def fail(self, what: str, at: int | None = None) -> DlibFormatError:
        at = self.pos if at is None else at
        return DlibFormatError(f"{self.path}: {what} (at byte {at} of {len(self.data)})")

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"file ends early: {n} byte(s) of {what} expected, {len(self.data) - self.pos} left; "
                            f"the file is truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def peek_byte(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def int(self, what: str = "integer") -> int:
        start = self.pos
        control = self.take(1, what)[0]
        size = control & INT_SIZE_MASK
        if control & INT_RESERVED_BITS or not 1 <= size <= 8:
            raise self.fail(f"bad integer control byte 0x{control:02x} for {what}", start)
        value = int.from_bytes(self.take(size, what), "little")
        return -value if control & INT_SIGN_BIT else value

    def bool(self, what: str = "bool") -> bool:
        start = self.pos
        ch = self.take(1, what)
        if ch not in (b"0", b"1"):
            raise self.fail(f"expected '0' or '1' for {what}, got {ch!r}", start)
        return ch == b"1"

    def string(self, what: str = "string") -> str:
        start = self.pos
        n = self.int(f"length of {what}")
        if not 0 <= n <= MAX_STRING_BYTES:
            raise self.fail(f"implausible length {n} for {what}", start)
        raw = self.take(n, what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not ASCII: {raw[:32]!r}", start) from None

    def float(self, what: str = "float") -> float:
        start = self.pos
        first = self.peek_byte()
        if first is not None and first & INT_RESERVED_BITS:
            raise self.fail(f"{what} uses dlib's old ASCII float format, which this reader does not support", start)
        mantissa, exponent = self.int(f"mantissa of {what}"), self.int(f"exponent of {what}")
        special = {FLOAT_INF: math.inf, FLOAT_NINF: -math.inf, FLOAT_NAN: math.nan}
        return special[exponent] if exponent in special else math.ldexp(mantissa, exponent)

    def shape(self, what: str) -> tuple[int, int, int, int]:
        dims = tuple(self.int(f"{what} dimension") for _ in range(4))
        if min(dims) < 0 or math.prod(dims) > MAX_TENSOR_VALUES:
            raise self.fail(f"implausible {what} shape {dims}")
        return dims

    def tensor(self, what: str = "tensor") -> np.ndarray:
        """A (n, k, nr, nc) float32 array."""
        start = self.pos
        version = self.int(f"version of {what}")
        if version not in (1, 2):
            raise self.fail(f"unknown {what} version {version} (expected 1 or 2)", start)
        dims = self.shape(what)
        count = math.prod(dims)
        if version == 2:
            values = np.frombuffer(self.take(4 * count, f"{count} float32 values of {what}"), dtype="<f4")
        else:
            values = np.array([self.float(what) for _ in range(count)], dtype=np.float32)
        return values.astype(np.float32).reshape(dims)

    def alias(self, what: str) -> tuple[int, int, int, int]:
        start = self.pos
        version = self.int(f"version of {what}")
        if version != 1:
            raise self.fail(f"unknown alias_tensor version {version} for {what} (expected 1)", start)
        return self.shape(what)
