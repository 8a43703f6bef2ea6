"""How the run store keeps an array: its dtype, shape, and bytes under a codec, chosen by
measuring a 1,048,576-device program-and-verify run (``benchmarks/bench_store.py``):

- ``bits-zstd``: a boolean array packed 8 to a byte (``numpy.packbits``), then Zstandard —
  masks (converged, stuck, which devices a verify read touched) cost an eighth of a byte per
  device or less, in a fraction of a millisecond each.
- ``shuffle-zstd``: integers, and floating-point arrays a sample of which shows it pays
  (targets, programming times, arrays of NaN): bytes shuffled (all first bytes of the values,
  then all second bytes, …: the HDF5/Blosc shuffle filter) then Zstandard at level 1.
  Shuffling lines up the bytes that repeat — the high bytes of addresses and iteration counts
  — so an address list of a tile shrinks ~500×, at about 5 ms per 4 MB where zlib took ~90 ms
  for less.
- ``raw``: conductance reads — float32 noise down to their last bits, which shrink only to
  ~0.8 — whatever else does not shrink by at least ``PAYS``, and everything not numeric.

Zstandard comes from pyarrow (a core dependency for Parquet): no extra package. Each array is
encoded whole, in the transaction of its event (a killed run keeps every completed event, as
before); decoding needs nothing but the row. Stores may also hold ``zlib`` and ``bits``
(deflate) arrays, which decode as well.
"""

from __future__ import annotations

import functools
import zlib
from typing import Any

import numpy as np

#: The codecs, by the name stored beside each array (the last two read only).
CODECS = ("raw", "shuffle-zstd", "bits-zstd", "zlib", "bits")
#: Zstandard level: 1, its fastest, within a few percent of its best on these arrays.
LEVEL = 1
#: An array is kept compressed when that makes it at most this fraction of its size.
PAYS = 0.95
#: A floating-point array is compressed only when a sample of its first ``SAMPLE_VALUES``
#: values compresses to at most this fraction: conductance reads (~0.8) stay raw, as
#: compressing them costs ~8% of a program-and-verify's time for a fifth of their bytes.
FLOAT_PAYS = 0.6
SAMPLE_VALUES = 16384


@functools.cache
def _zstd() -> Any:
    import pyarrow

    return pyarrow.Codec("zstd", compression_level=LEVEL)


def encode(array: np.ndarray) -> tuple[str, bytes | memoryview]:
    """(codec, bytes) for ``array`` (C order); raw bytes as a view of the array, not a copy."""
    array = np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        return "bits-zstd", _compress(np.packbits(array.ravel()).tobytes())
    if array.dtype.kind in "biuf":  # a view of the array's bytes, not a copy
        raw: bytes | memoryview = memoryview(array.reshape(-1)).cast("B")  # type: ignore[arg-type]
    else:  # datetimes and the like have no buffer format: their bytes copied
        raw = array.tobytes()
    if array.dtype.kind in "iuf" and array.size:
        if array.dtype.kind == "f" and not _pays(array.reshape(-1)[:SAMPLE_VALUES]):
            return "raw", raw  # measured noise: not worth the time (see the module)
        shuffled = _shuffle(array).tobytes() if array.dtype.itemsize > 1 else raw
        packed = _compress(shuffled)
        if len(packed) <= PAYS * array.nbytes:
            return "shuffle-zstd", packed
    return "raw", raw


def _pays(sample: np.ndarray) -> bool:
    """Whether a floating-point array's first values shuffle and compress to at most
    ``FLOAT_PAYS`` of their size."""
    data = _shuffle(np.ascontiguousarray(sample)).tobytes()
    return len(_compress(data)) <= FLOAT_PAYS * sample.nbytes


def decode(codec: str, blob: bytes, dtype: str, shape: list[int]) -> np.ndarray:
    """The array stored as ``blob`` under ``codec``: a writable array of its own."""
    kind = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if codec in ("bits-zstd", "bits"):
        packed = (
            _decompress(blob, (count + 7) // 8) if codec == "bits-zstd" else zlib.decompress(blob)
        )
        bits = np.frombuffer(packed, dtype=np.uint8)
        return np.unpackbits(bits, count=count).astype(bool).reshape(shape)
    if codec == "shuffle-zstd":
        data = np.frombuffer(_decompress(blob, count * kind.itemsize), dtype=np.uint8)
        data = data.reshape(kind.itemsize, count).T.copy()  # a writable array of its own
        return data.view(kind).reshape(shape)
    if codec == "zlib":
        blob = zlib.decompress(blob)
    elif codec not in ("raw", ""):
        raise ValueError(f"unknown array codec {codec!r} (a newer pcm-hil wrote this store)")
    return np.frombuffer(bytearray(blob), dtype=kind).reshape(shape)  # writable, like the rest


def _shuffle(array: np.ndarray) -> np.ndarray:
    """The bytes of ``array`` regrouped by their place in each value."""
    return array.reshape(-1).view(np.uint8).reshape(-1, array.dtype.itemsize).T.copy()


def _compress(data: bytes | memoryview) -> bytes:
    return _zstd().compress(data, asbytes=True)


def _decompress(blob: bytes, size: int) -> bytes:
    if size == 0:
        return b""
    return _zstd().decompress(blob, decompressed_size=size, asbytes=True)
