"""Drift history in any SQL database SQLAlchemy reaches (SQLite built in, Postgres via psycopg).

One flat table (``divtransforms.flat_records``: a column per scalar record field, ``details``
JSON for the nested parts) and a small metadata table, ``divtransforms_schema``, that holds the
table layout version per history table. :meth:`SqlHistory.migrate` creates both, and migrates an
older table forward: columns that a newer record schema added are added with ``ALTER TABLE ...
ADD COLUMN`` (nullable; old rows read NULL), and the version is bumped. A table written by a newer
version than this one is an error, never silently rewritten.

Writes are idempotent per ``(run_id, feature, window_key, pane)`` (the primary key): rows with the
keys being written are deleted and inserted again in one transaction, so a retried run replaces
its rows instead of adding them twice, on every database (no dialect-specific upsert).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from divtransforms.flat_records import DETAILS_COLUMN, KEY_COLUMNS, flat_columns, flatten_record

log = logging.getLogger(__name__)

#: Version of the SQL table layout (bumped when the flat layout changes; see migrate()).
SQL_LAYOUT_VERSION = 1
META_TABLE = "divtransforms_schema"


class SqlHistoryError(ValueError):
    """The SQL history cannot be used (bad URL, newer layout, unreachable database)."""


def _sql_type(kind: str, dialect: str):
    import sqlalchemy as sa

    if kind == "json":
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return JSONB()
        return sa.JSON()
    return {
        "string": sa.Text(),
        "int": sa.BigInteger(),
        "float": sa.Float(precision=53),
        "timestamp": sa.DateTime(timezone=True),
    }[kind]


def redact_url(url: str) -> str:
    """The URL with its password hidden (for logs and errors)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show the scheme only
        return url.split("://", 1)[0] + "://..."


class SqlHistory:
    """A drift-record table in a SQL database; ``with SqlHistory(url) as h: h.write(table)``."""

    def __init__(
        self,
        url: str,
        table: str = "drift_records",
        *,
        db_schema: str | None = None,
        monitor: str | None = None,
    ):
        import sqlalchemy as sa

        if not table.replace("_", "").isalnum():
            raise SqlHistoryError(f"sql export: table name {table!r} must be letters, digits, _")
        try:
            self.engine = sa.create_engine(url, future=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise SqlHistoryError(f"sql export: cannot use {redact_url(url)}: {exc}") from None
        self.url = redact_url(url)
        self.name = table
        self.monitor = monitor
        self.db_schema = db_schema
        self.metadata = sa.MetaData(schema=db_schema)
        dialect = self.engine.dialect.name
        columns = [
            sa.Column(
                name,
                _sql_type(kind, dialect),
                nullable=name not in KEY_COLUMNS,
            )
            for name, kind in flat_columns()
        ]
        self.table = sa.Table(
            table,
            self.metadata,
            *columns,
            sa.PrimaryKeyConstraint(*KEY_COLUMNS, name=f"pk_{table}"),
            sa.Index(f"ix_{table}_monitor_feature_window", "monitor", "feature", "window_end"),
        )
        self.meta = sa.Table(
            META_TABLE,
            self.metadata,
            sa.Column("table_name", sa.Text(), primary_key=True),
            sa.Column("layout_version", sa.Integer(), nullable=False),
            sa.Column("columns", sa.Text(), nullable=False),
        )
        self._migrated = False

    def __enter__(self) -> SqlHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ schema

    def migrate(self) -> list[str]:
        """Create or migrate the table; returns the columns added (empty when up to date)."""
        import sqlalchemy as sa

        added: list[str] = []
        try:
            with self.engine.begin() as conn:
                self.meta.create(conn, checkfirst=True)
                row = conn.execute(
                    sa.select(self.meta.c.layout_version).where(self.meta.c.table_name == self.name)
                ).first()
                if row is not None and row[0] > SQL_LAYOUT_VERSION:
                    raise SqlHistoryError(
                        f"sql export: table {self.name!r} in {self.url} has layout version "
                        f"{row[0]}, newer than this divtransforms ({SQL_LAYOUT_VERSION}); upgrade"
                    )
                inspector = sa.inspect(conn)
                if not inspector.has_table(self.name, schema=self.db_schema):
                    self.table.create(conn)
                    log.info("sql export: created table %s in %s", self.name, self.url)
                else:
                    existing = {
                        c["name"] for c in inspector.get_columns(self.name, schema=self.db_schema)
                    }
                    missing_keys = [k for k in KEY_COLUMNS if k not in existing]
                    if missing_keys:
                        raise SqlHistoryError(
                            f"sql export: table {self.name!r} in {self.url} exists but is not "
                            f"a divtransforms history (no {', '.join(missing_keys)} column)"
                        )
                    preparer = self.engine.dialect.identifier_preparer
                    for col in self.table.columns:
                        if col.name in existing:
                            continue
                        ddl = (
                            f"ALTER TABLE {preparer.format_table(self.table)} ADD COLUMN "
                            f"{preparer.quote(col.name)} "
                            f"{col.type.compile(dialect=self.engine.dialect)}"
                        )
                        conn.execute(sa.text(ddl))
                        added.append(col.name)
                    if added:
                        log.info("sql export: migrated %s: added column(s) %s", self.name, added)
                values = {
                    "layout_version": SQL_LAYOUT_VERSION,
                    "columns": ",".join(c.name for c in self.table.columns),
                }
                if row is None:
                    conn.execute(self.meta.insert().values(table_name=self.name, **values))
                else:
                    conn.execute(
                        self.meta.update()
                        .where(self.meta.c.table_name == self.name)
                        .values(**values)
                    )
        except sa.exc.SQLAlchemyError as exc:
            raise SqlHistoryError(
                f"sql export: cannot prepare {self.name} in {self.url}: {type(exc).__name__}: "
                f"{getattr(exc, 'orig', exc)}"
            ) from None
        self._migrated = True
        return added

    def layout_version(self) -> int | None:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(META_TABLE, schema=self.db_schema):
                return None
            row = conn.execute(
                sa.select(self.meta.c.layout_version).where(self.meta.c.table_name == self.name)
            ).first()
        return None if row is None else int(row[0])

    # ------------------------------------------------------------------ data

    def write(self, records: pa.Table | Iterable[Mapping[str, Any]]) -> int:
        """Write drift records (a table or dicts); returns the rows written. Idempotent per key."""
        import sqlalchemy as sa

        if not self._migrated:
            self.migrate()
        rows = [
            flatten_record(r, details_as_text=False, monitor=self.monitor)
            for r in (records.to_pylist() if isinstance(records, pa.Table) else records)
        ]
        if not rows:
            return 0
        keys = {tuple(r[k] for k in KEY_COLUMNS) for r in rows}
        if len(keys) != len(rows):
            raise SqlHistoryError(
                f"sql export: {len(rows) - len(keys)} record(s) repeat a (run_id, feature, "
                "window, pane) key in one write"
            )
        cond = sa.and_(*(self.table.c[k] == sa.bindparam(f"k_{k}") for k in KEY_COLUMNS))
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    self.table.delete().where(cond),
                    [{f"k_{k}": r[k] for k in KEY_COLUMNS} for r in rows],
                )
                conn.execute(self.table.insert(), rows)
        except sa.exc.SQLAlchemyError as exc:
            raise SqlHistoryError(
                f"sql export: writing {len(rows)} rows to {self.name} in {self.url} failed: "
                f"{type(exc).__name__}: {getattr(exc, 'orig', exc)}"
            ) from None
        return len(rows)

    def run_ids(self) -> set[str]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(sa.select(self.table.c.run_id).distinct())}

    def read(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Rows (dicts, ``details`` parsed) in (feature, window_start, pane) order."""
        import sqlalchemy as sa

        query = sa.select(self.table).order_by(
            self.table.c.feature, self.table.c.window_key, self.table.c.pane
        )
        if run_id is not None:
            query = query.where(self.table.c.run_id == run_id)
        with self.engine.connect() as conn:
            out = [dict(r._mapping) for r in conn.execute(query)]
        stamps = [name for name, kind in flat_columns() if kind == "timestamp"]
        for r in out:
            if isinstance(r.get(DETAILS_COLUMN), str):
                r[DETAILS_COLUMN] = json.loads(r[DETAILS_COLUMN])
            for name in stamps:  # SQLite keeps no zone: the values were written in UTC
                value = r.get(name)
                if isinstance(value, datetime):
                    r[name] = (
                        value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
                    )
        return out
