"""Which columns of a table are features, and of which kind: one rule (:func:`feature_kinds`),
which ``ReferenceProfile.build`` applies to the columns in memory and :func:`infer_kinds` to an
Arrow schema and a sample of the data (Beam-free, so the in-process engine and the Beam job
share it; ``divtransforms.beam.reference`` re-exports it)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import pyarrow as pa

from divtransforms.columns import type_kind
from divtransforms.quality import column_role

__all__ = ["feature_kinds", "infer_kinds"]

_LOG = logging.getLogger(__name__)


def feature_kinds(
    columns: Sequence[str],
    kind_of: Callable[[str], str],
    *,
    features: Sequence[str] | None = None,
    kinds: Mapping[str, str] | None = None,
    exclude: Sequence[str] = (),
    role_of: Callable[[str], str | None] | None = None,
    where: str = "the data",
) -> dict[str, str]:
    """``{feature: numeric|categorical}`` of a table with ``columns`` (in their order).

    ``features`` (default: every column but ``exclude``) must be in the data (``where``: what
    the error calls it, e.g. the file the columns are from). A column's kind
    is ``kinds``' or ``kind_of(column)`` (``columns.column_kind``). Without ``features``,
    timestamp columns are skipped, and so are the columns ``role_of`` gives a reason for
    (``quality.column_role``: dates or times in text, unique per row), each with a log line
    saying why; naming a column in ``features`` or ``kinds`` keeps it, and a named column
    holding timestamps is an error.
    """
    kinds = dict(kinds or {})
    if features is None:
        excluded = set(exclude)
        names = [n for n in columns if n not in excluded]
    else:
        names = list(features)
        missing = [n for n in names if n not in set(columns)]
        if missing:
            raise ValueError(f"features {missing} are not in {where} (columns: {list(columns)})")
    out = {}
    for name in names:
        named = features is not None or name in kinds
        kind = kinds.get(name) or kind_of(name)
        if kind == "temporal":
            if named:
                raise ValueError(f"feature {name!r} holds timestamps: exclude it or give its kind")
            _LOG.info("reference: column %r skipped: it holds timestamps", name)
            continue
        role = None if named or role_of is None else role_of(name)
        if role:
            _LOG.info(
                "reference: column %r skipped: %s (name it in the features, or give its kind, "
                "to profile it)",
                name,
                role,
            )
            continue
        out[name] = kind
    return out


def infer_kinds(
    schema: pa.Schema,
    features: Sequence[str] | None = None,
    kinds: Mapping[str, str] | None = None,
    exclude: Sequence[str] = (),
    sample: pa.Table | None = None,
    source: str | None = None,
) -> dict[str, str]:
    """``{feature: numeric|categorical}`` from an Arrow schema (:func:`feature_kinds`; no
    ``features``, or none: every column but ``exclude``), with a ``sample`` of the data for
    ``quality.column_role``; ``source``: the file the schema is from, for the errors."""

    def kind_of(name: str) -> str:
        return type_kind(schema.field(name).type)  # (pa.array([]) would import pandas)

    def role_of(name: str) -> str | None:
        if sample is None or name not in sample.schema.names:
            return None
        return column_role(sample.column(name))

    return feature_kinds(
        schema.names,
        kind_of,
        features=list(features) if features else None,
        kinds=kinds,
        exclude=exclude,
        role_of=role_of,
        where=source or "the data",
    )
