"""Deterministic benchmark data: a reference and a current side, written as Parquet.

Two cases (issue 11):

- ``standard``: ``rows`` rows per side, 20 numeric + 5 categorical features;
- ``wide``: ``rows`` rows per side, ``cols`` numeric features.

Numeric features cycle through realistic shapes (normal, lognormal, integer counts, a skewed mix,
a near-constant, a 0/1 flag); categorical ones are strings with Zipf-like frequencies. On the
current side a fixed, known subset of features is shifted (``shifted`` in the manifest), so that
every contender can be checked for flagging exactly those. The same seed gives the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["Case", "make_case"]

ROW_GROUP = 1 << 17


@dataclass(frozen=True)
class Case:
    name: str
    reference: Path
    current: Path
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    shifted: tuple[str, ...]
    rows: int

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical


def _numeric(rng: np.random.Generator, i: int, n: int, shift: bool) -> np.ndarray:
    shape = i % 6
    d = 0.25 if shift else 0.0
    if shape == 0:
        return rng.normal(10.0 + d, 2.0, n)
    if shape == 1:
        return rng.lognormal(3.0 + d, 0.7, n)
    if shape == 2:
        return rng.poisson(4.0 * (1 + d), n).astype(np.float64)
    if shape == 3:
        x = np.where(rng.random(n) < 0.3, rng.exponential(5.0, n), rng.normal(20.0, 3.0, n))
        return x + 3.0 * d
    if shape == 4:
        return 1e6 + rng.normal(0.0, 1e-3 * (1 + d), n)
    return (rng.random(n) < 0.2 + 0.1 * d).astype(np.float64)


def _categorical(rng: np.random.Generator, i: int, n: int, shift: bool) -> pa.Array:
    k = (20, 80, 300, 7, 1500)[i % 5]
    p = 1.0 / np.arange(1, k + 1) ** (1.1 if not shift else 0.8)
    p /= p.sum()
    idx = rng.choice(k, size=n, p=p)
    labels = pa.array([f"c{i}_v{j}" for j in range(k)])
    return labels.take(pa.array(idx))


def make_case(
    name: str, directory: Path, rows: int, n_numeric: int, n_categorical: int, seed: int = 11
) -> Case:
    """Write ``<name>-reference.parquet`` and ``<name>-current.parquet`` (reused when present)."""
    directory.mkdir(parents=True, exist_ok=True)
    numeric = tuple(f"x{i:04d}" for i in range(n_numeric))
    categorical = tuple(f"c{i:02d}" for i in range(n_categorical))
    shifted = tuple(
        [n for j, n in enumerate(numeric) if j % 10 == 3]
        + [c for j, c in enumerate(categorical) if j % 5 == 1]
    )
    ref, cur = directory / f"{name}-reference.parquet", directory / f"{name}-current.parquet"
    manifest = directory / f"{name}.json"
    key = {"rows": rows, "numeric": n_numeric, "categorical": n_categorical, "seed": seed}
    if not (
        ref.exists()
        and cur.exists()
        and manifest.exists()
        and json.loads(manifest.read_text()) == key
    ):
        for path, side in ((ref, 0), (cur, 1)):
            rng = np.random.default_rng([seed, side])
            cols: dict[str, pa.Array] = {}
            for j, f in enumerate(numeric):
                cols[f] = pa.array(_numeric(rng, j, rows, side == 1 and f in shifted))
            for j, f in enumerate(categorical):
                cols[f] = _categorical(rng, j, rows, side == 1 and f in shifted)
            pq.write_table(pa.table(cols), path, row_group_size=ROW_GROUP)
        manifest.write_text(json.dumps(key))
    return Case(name, ref, cur, numeric, categorical, shifted, rows)
