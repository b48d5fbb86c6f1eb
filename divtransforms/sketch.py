"""A membership sketch of a reference's values: a Bloom filter with vectorised, stable hashing.

A reference keeps its top-N categories (and, up to ``max_other`` distinct values, the rest by
name). Past that, a value that is new cannot be told from one of the untracked reference values,
so a feed whose ids are *all* new would look like the reference. :class:`BloomFilter` remembers
every distinct reference value in ``-ln(fpr) / ln(2)^2`` bits each (14.4 bits at the default
``fpr = 0.001``): a value it says is absent was certainly never seen, and a new value is
mistaken for a reference value with probability ``fpr`` (so the unseen count is low by at most
that fraction).

Hashing is a polynomial hash of each string's UTF-8 bytes modulo 2^64, computed for a whole
Arrow string array with numpy prefix sums (no Python loop per value), then mixed with SplitMix64;
the ``k`` bit positions come from double hashing. It is stable across processes, machines and
versions of Python (unlike ``hash()``), so a filter built on one machine answers on another.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

__all__ = ["DEFAULT_FPR", "BloomFilter", "hash_strings"]

DEFAULT_FPR = 1e-3
_P = np.uint64(0x100000001B3)  # odd, so invertible modulo 2^64
_P_INV = np.uint64(pow(int(_P), -1, 1 << 64))
_CHUNK = 1 << 16  # strings hashed at a time (bounds the prefix-sum temporaries)
_SEED2 = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _string_buffers(arr: pa.Array) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
    """(offsets of the ``len + 1`` string bounds, the data bytes) of a string array."""
    wide = pa.types.is_large_string(arr.type)
    _, off_buf, data_buf = arr.buffers()
    bounds = np.frombuffer(off_buf, dtype=np.int64 if wide else np.int32)
    off = bounds[arr.offset : arr.offset + len(arr) + 1].astype(np.int64)
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.empty(0, np.uint8)
    )
    return off, data


def hash_strings(values: pa.Array) -> NDArray[np.uint64]:
    """A 64-bit hash of every string of an Arrow string array (nulls hash as the empty string)."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise TypeError(f"hash_strings needs a string array, got {values.type}")
    out = np.empty(len(values), dtype=np.uint64)
    for lo in range(0, len(values), _CHUNK):
        part = values.slice(lo, _CHUNK)
        off, data = _string_buffers(part)
        base = int(off[0])
        b = data[base : int(off[-1])].astype(np.uint64) + np.uint64(1)
        rel = off - base
        with np.errstate(over="ignore"):
            powers = np.empty(b.size + 1, dtype=np.uint64)
            powers[0] = 1
            if b.size:
                np.cumprod(np.full(b.size, _P, dtype=np.uint64), out=powers[1:])
            prefix = np.zeros(b.size + 1, dtype=np.uint64)
            np.cumsum(b * powers[:-1], out=prefix[1:])
            inv = np.empty(b.size + 1, dtype=np.uint64)
            inv[0] = 1
            if b.size:
                np.cumprod(np.full(b.size, _P_INV, dtype=np.uint64), out=inv[1:])
            start, end = rel[:-1], rel[1:]
            h = (prefix[end] - prefix[start]) * inv[start]
            lengths = (end - start).astype(np.uint64)
            out[lo : lo + len(part)] = _splitmix64(h ^ (lengths * _SEED2))
    return out


@dataclass(frozen=True, eq=False)
class BloomFilter:
    """``m`` bits (packed little-endian), ``k`` hash positions, ``n_items`` values added."""

    bits: NDArray[np.uint8]
    m: int
    k: int
    n_items: int
    fpr: float

    @classmethod
    def of(cls, values: pa.Array | list[str], fpr: float = DEFAULT_FPR) -> BloomFilter:
        """A filter holding the distinct strings ``values`` (nulls are dropped)."""
        arr = values if isinstance(values, pa.Array) else pa.array(values, type=pa.string())
        arr = arr.drop_null()
        if not 0 < fpr < 1:
            raise ValueError(f"a Bloom filter's false-positive rate is in (0, 1), got {fpr}")
        n = max(len(arr), 1)
        m = max(64, math.ceil(-n * math.log(fpr) / math.log(2) ** 2))
        m = (m + 7) // 8 * 8
        k = max(1, round(m / n * math.log(2)))
        flags = np.zeros(m, dtype=bool)
        for lo in range(0, len(arr), _CHUNK):
            flags[_positions(hash_strings(arr.slice(lo, _CHUNK)), m, k).ravel()] = True
        return cls(np.packbits(flags, bitorder="little"), m, k, len(arr), fpr)

    def contains(self, values: pa.Array) -> NDArray[np.bool_]:
        """Whether each string may have been added (False: certainly not)."""
        if len(values) == 0:
            return np.zeros(0, dtype=bool)
        pos = _positions(hash_strings(values), self.m, self.k)
        hit = (self.bits[pos >> 3] >> (pos & 7).astype(np.uint8)) & 1
        return np.all(hit.astype(bool), axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "bloom",
            "hash": "poly64-splitmix64",
            "m": self.m,
            "k": self.k,
            "n_items": self.n_items,
            "fpr": self.fpr,
            "bits": base64.b64encode(self.bits.tobytes()).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BloomFilter:
        if d.get("type") != "bloom" or d.get("hash") != "poly64-splitmix64":
            raise ValueError(f"unknown membership sketch {d.get('type')!r}/{d.get('hash')!r}")
        bits = np.frombuffer(base64.b64decode(d["bits"]), dtype=np.uint8)
        m = int(d["m"])
        if bits.size * 8 != m:
            raise ValueError(f"Bloom filter has {bits.size * 8} bits, expected {m}")
        return cls(bits, m, int(d["k"]), int(d["n_items"]), float(d["fpr"]))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BloomFilter)
            and (self.m, self.k, self.n_items) == (other.m, other.k, other.n_items)
            and np.array_equal(self.bits, other.bits)
        )

    def __hash__(self) -> int:
        return hash((self.m, self.k, self.n_items, self.bits.tobytes()))


def _positions(h: NDArray[np.uint64], m: int, k: int) -> NDArray[np.int64]:
    """``(len(h), k)`` bit positions by double hashing (Kirsch-Mitzenmacher)."""
    h1 = _splitmix64(h)
    h2 = _splitmix64(h ^ _SEED2) | np.uint64(1)
    steps = np.arange(k, dtype=np.uint64)
    with np.errstate(over="ignore"):
        pos = h1[:, None] + steps[None, :] * h2[:, None]
    return (pos % np.uint64(m)).astype(np.int64)
