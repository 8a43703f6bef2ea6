"""How the run store keeps an array: its dtype, shape, and bytes under a codec chosen by what
pays, measured on 1,048,576-device runs (``benchmarks/bench_store.py``):

- ``bits``: a boolean array packed 8 to a byte (``numpy.packbits``), then deflated — masks
  (converged, stuck, which devices a verify read touched) cost an eighth of a byte per device
  or less.
- ``zlib``: integers (tile, address, iterations) and floating-point arrays that deflate to at
  most ``PAYS`` of their size (programming times, which repeat per pulse command; arrays of
  NaN), at level 1: deflate's fastest, within a few percent of its best on these arrays.
- ``raw``: whatever else — conductance reads in float32 are noise down to their last bits and
  deflate by a few percent at a cost of tens of ms per million values: not worth it.

Each array is encoded whole, in the transaction of its event (a killed run keeps every
completed event, as before); decoding needs nothing but the row.
"""

from __future__ import annotations

import zlib

import numpy as np

#: The codecs, by the name stored beside each array.
CODECS = ("raw", "zlib", "bits")
#: Deflate level: 1, the fastest (see the module).
LEVEL = 1
#: A floating-point array is deflated when a sample of it deflates to at most this fraction.
PAYS = 0.75
#: Bytes of a floating-point array tried before deflating all of it.
SAMPLE_BYTES = 65536


def encode(array: np.ndarray) -> tuple[str, bytes]:
    """(codec, bytes) for ``array`` (C order)."""
    array = np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        return "bits", zlib.compress(np.packbits(array.ravel()).tobytes(), LEVEL)
    data = array.tobytes()
    if array.dtype.kind in "iu":
        return "zlib", zlib.compress(data, LEVEL)
    if array.dtype.kind == "f" and len(data) >= 64:
        sample = data[:SAMPLE_BYTES]
        if len(zlib.compress(sample, LEVEL)) <= PAYS * len(sample):
            return "zlib", zlib.compress(data, LEVEL)
    return "raw", data


def decode(codec: str, blob: bytes, dtype: str, shape: list[int]) -> np.ndarray:
    """The array stored as ``blob`` under ``codec`` (read-only view or a fresh array)."""
    kind = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if codec == "bits":
        bits = np.frombuffer(zlib.decompress(blob), dtype=np.uint8)
        return np.unpackbits(bits, count=count).astype(bool).reshape(shape)
    if codec == "zlib":
        blob = zlib.decompress(blob)
    elif codec not in ("raw", ""):
        raise ValueError(f"unknown array codec {codec!r} (a newer pcm-hil wrote this store)")
    return np.frombuffer(blob, dtype=kind).reshape(shape)
