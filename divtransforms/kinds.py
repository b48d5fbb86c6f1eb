"""Which columns of a table are features, and of which kind: ``infer_kinds`` (Beam-free, so the
in-process engine and the Beam job share it; ``divtransforms.beam.reference`` re-exports it)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pyarrow as pa

from divtransforms.columns import type_kind
from divtransforms.quality import column_role

__all__ = ["infer_kinds"]

_LOG = logging.getLogger("divtransforms.beam.reference")


def infer_kinds(
    schema: pa.Schema,
    features: Sequence[str] | None = None,
    kinds: Mapping[str, str] | None = None,
    exclude: Sequence[str] = (),
    sample: pa.Table | None = None,
) -> dict[str, str]:
    """``{feature: numeric|categorical}`` from an Arrow schema.

    Without ``features``, timestamp columns are skipped, and so are (with a ``sample`` of the
    data) columns whose values are dates or times or unique per row (``quality.column_role``),
    each with a log line saying why; naming a column in ``features`` or ``kinds`` keeps it.
    """
    kinds = dict(kinds or {})
    names = list(features) if features else [n for n in schema.names if n not in set(exclude)]
    out = {}
    for name in names:
        if name in kinds:
            out[name] = kinds[name]
            continue
        idx = schema.get_field_index(name)
        if idx < 0:
            raise ValueError(
                f"feature {name!r} is not in the data (columns: {', '.join(schema.names)})"
            )
        kind = type_kind(schema.field(idx).type)  # (pa.array([]) would import pandas)
        if kind == "temporal":
            if features:
                raise ValueError(f"feature {name!r} holds timestamps: exclude it or give its kind")
            _LOG.info("reference: column %r skipped: it holds timestamps", name)
            continue
        if not features and sample is not None and name in sample.schema.names:
            role = column_role(sample.column(name))
            if role:
                _LOG.info(
                    "reference: column %r skipped: %s (give --features or --categorical to "
                    "profile it)",
                    name,
                    role,
                )
                continue
        out[name] = kind
    return out
