"""Column values as the bins read them: numbers as float64 (text parsed, the rest counted
invalid) and categories as Arrow strings (booleans ``true``/``false``, numbers as Arrow casts
them). ``divtransforms.bins`` re-exports these."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

__all__ = ["add_value_counts", "dictionary_counts", "to_float_array", "value_counts"]


def _where(feature: str | None) -> str:
    return f"feature {feature!r}: " if feature else ""


def to_float_array(values: Any, feature: str | None = None) -> tuple[NDArray[np.float64], int]:
    """Convert a batch to float64 (missing -> NaN) and count values that are not numbers.

    Accepts numpy arrays, sequences, ``pyarrow.Array`` and ``ChunkedArray``. Numeric and boolean
    data convert without a Python loop; text is parsed (``"1.5"`` is 1.5, ``""`` is missing,
    ``"abc"`` is invalid) on the slower path that only mistyped data takes.
    Returns ``(values, n_invalid)``; invalid values are removed from the returned array.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if isinstance(values, pa.Array):
        t = values.type
        if (
            pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_boolean(t)
            or pa.types.is_decimal(t)
            or pa.types.is_null(t)
        ):
            arr = pc.cast(values, pa.float64()) if t != pa.float64() else values
            if arr.null_count:
                arr = pc.fill_null(arr, math.nan)
            return _float_view(arr), 0
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
            values = np.asarray(values.to_pylist(), dtype=object)
        else:
            raise ValueError(f"{_where(feature)}cannot treat Arrow type {t} as numeric")
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64, copy=False), 0
    if arr.dtype.kind in "mM":
        raise ValueError(f"{_where(feature)}date/time values are not numeric samples")
    return _parse_objects(arr, feature)


def _float_view(arr: pa.Array) -> NDArray[np.float64]:
    """The values of a float64 Arrow array without nulls, as a read-only numpy view of its data
    buffer (``Array.to_numpy`` gives the same, but its first call imports pandas: 0.2-0.3 s of
    every command's start)."""
    n = len(arr)
    data = arr.buffers()[1] if n else None
    if data is None:
        return np.empty(0, dtype=np.float64)
    return np.frombuffer(data, dtype=np.float64, count=n, offset=arr.offset * 8)


def _parse_objects(arr: NDArray[Any], feature: str | None) -> tuple[NDArray[np.float64], int]:
    out = np.empty(arr.shape[0], dtype=np.float64)
    keep = np.ones(arr.shape[0], dtype=bool)
    for i, v in enumerate(arr.tolist()):
        if v is None:
            out[i] = math.nan
        elif isinstance(v, bool | int | float | np.number):
            out[i] = float(v)
        elif isinstance(v, str):
            s = v.strip()
            if s == "" or s.lower() in ("nan", "null", "none", "na"):
                out[i] = math.nan
            else:
                try:
                    out[i] = float(s)
                except ValueError:
                    keep[i] = False
        else:
            keep[i] = False
    n_invalid = int((~keep).sum())
    return (out if n_invalid == 0 else out[keep]), n_invalid


def _to_string_array(values: Any, feature: str | None) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if not isinstance(values, pa.Array):
        arr = np.asarray(values)
        if arr.dtype.kind == "f":
            values = pa.array(arr, from_pandas=True)  # NaN -> null
        elif arr.dtype.kind == "O":
            obj = [None if (isinstance(v, float) and v != v) else v for v in arr.ravel().tolist()]
            try:  # one type throughout: Arrow formats it exactly as for a typed array
                values = pa.array(obj)
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: format each value alone
                values = pa.array([_canonical(v) for v in obj], type=pa.string())
        else:
            values = pa.array(arr.reshape(-1))
    t = values.type
    if pa.types.is_dictionary(t):
        values = values.dictionary_decode()
        t = values.type
    if pa.types.is_floating(t):
        values = pc.if_else(pc.is_nan(values), pa.scalar(None, t), values)
    if pa.types.is_nested(t):
        raise ValueError(f"{_where(feature)}cannot treat Arrow type {t} as categorical")
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        values = pc.cast(values, pa.string())
    return values


def value_counts(values: Any, feature: str | None = None) -> dict[str, int]:
    """``{value: count}`` of the non-missing values, as the categorical bins read them."""
    return add_value_counts({}, values, feature)


def add_value_counts(counts: dict[str, int], values: Any, feature: str | None = None) -> dict:
    """Add the counts of a batch's non-missing values to ``counts`` (returned)."""
    coded = dictionary_counts(values)
    if coded is not None:
        words, per, _ = coded
        keep = np.flatnonzero(per)
        pairs = zip(words.take(pa.array(keep)).to_pylist(), per[keep].tolist(), strict=True)
    else:
        arr = _to_string_array(values, feature).drop_null()
        if len(arr) == 0:
            return counts
        vc = pc.value_counts(arr)
        pairs = zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)
    for v, c in pairs:
        counts[v] = counts.get(v, 0) + c
    return counts


def dictionary_counts(values: Any) -> tuple[pa.Array, NDArray[np.int64], int] | None:
    """``(dictionary, rows per dictionary entry, missing rows)`` of a dictionary-encoded text
    column (Parquet text read as dictionaries), counted on the codes without decoding a value;
    None for any other column. Null entries of the dictionary count as missing (count 0)."""
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks != 1:
            return None
        values = values.chunk(0)
    if not isinstance(values, pa.DictionaryArray):
        return None
    words = values.dictionary
    if not (pa.types.is_string(words.type) or pa.types.is_large_string(words.type)):
        return None
    k = len(words)
    codes = values.indices
    if codes.null_count:
        codes = pc.fill_null(codes, k)
    per = np.bincount(codes.to_numpy(), minlength=k + 1).astype(np.int64, copy=False)
    missing = int(per[k])
    per = per[:k]
    if words.null_count:
        null_words = np.flatnonzero(pc.is_null(words).to_numpy(zero_copy_only=False))
        missing += int(per[null_words].sum())
        per[null_words] = 0
    return words, per, missing


def _canonical(v: Any) -> str | None:
    """One value as the string a typed Arrow array of its type would cast it to."""
    if v is None or isinstance(v, str):
        return v
    try:
        return pa.scalar(v).cast(pa.string()).as_py()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return str(v)
