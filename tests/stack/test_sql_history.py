"""SQL history: flat table + details JSON, idempotent writes, versioned schema and migration.

SQLite always; PostgreSQL against a real throwaway cluster (tests/stack/conftest.py).
"""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest

from divtransforms.flat_records import KEY_COLUMNS, flat_columns, nested_fields
from flows.stack.sql_history import SQL_LAYOUT_VERSION, SqlHistory, SqlHistoryError

from .records import drift_table


def _check_round_trip(rows: list[dict], table: pa.Table) -> None:
    assert len(rows) == table.num_rows
    by_key = {(r["feature"], r["window_start"], r["pane"]): r for r in rows}
    for rec in table.to_pylist():
        row = by_key[(rec["feature"], rec["window_start"], rec["pane"])]
        for name, kind in flat_columns()[:-4]:
            want = rec[name]
            if kind == "float" and want is not None and not math.isfinite(want):
                assert row[name] is None, name
            elif kind == "float" and want is not None:
                assert row[name] == pytest.approx(want, rel=1e-15, abs=0), name
            else:
                assert row[name] == want, name
        # nested parts: exactly the record's, in JSON
        assert row["details"]["counts"] == rec["counts"]
        assert row["details"]["bin_labels"] == rec["bin_labels"]
        assert [p["name"] for p in row["details"]["mle_params"] or []] == [
            p["name"] for p in rec["mle_params"] or []
        ]
        assert set(row["details"]) == set(nested_fields())


def _exercise(url: str) -> None:
    table = drift_table("run-1")
    assert table.num_rows >= 8
    with SqlHistory(url) as h:
        assert h.migrate() == []
        assert h.layout_version() == SQL_LAYOUT_VERSION
        assert h.write(table) == table.num_rows
        assert h.write(table) == table.num_rows  # a retried run: replaced, not doubled
        h.write(drift_table("run-2", hours=2, seed=8))
        assert h.run_ids() == {"run-1", "run-2"}
        assert len(h.read("run-1")) == table.num_rows
        _check_round_trip(h.read("run-1"), table)
        assert len(h.read()) == table.num_rows + drift_table("run-2", hours=2, seed=8).num_rows


def test_sqlite_round_trip_and_idempotent(tmp_path):
    _exercise(f"sqlite:///{tmp_path / 'drift.db'}")


def test_postgres_round_trip_and_idempotent(postgres_url):
    import sqlalchemy as sa

    _exercise(postgres_url)
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        types = dict(
            conn.execute(
                sa.text(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = 'drift_records'"
                )
            ).all()
        )
        # the JSON column is queryable JSON (jsonb), e.g. for Grafana
        n = conn.execute(
            sa.text(
                "SELECT count(*) FROM drift_records WHERE jsonb_array_length(details->'counts') > 0"
            )
        ).scalar()
    engine.dispose()
    assert types["details"] == "jsonb"
    assert types["window_start"] == "timestamp with time zone"
    assert types["js_divergence"] == "double precision"
    assert n > 0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_adds_new_record_fields(backend, tmp_path, request):
    """An older table (fewer columns, older version) is migrated forward; old rows read NULL."""
    import sqlalchemy as sa

    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    table_name = f"old_{backend}"
    dropped = ("psi", "hellinger", "mle_fit")
    with SqlHistory(url, table_name) as current:
        old = sa.Table(
            table_name,
            sa.MetaData(),
            *(
                sa.Column(c.name, c.type, nullable=c.nullable)
                for c in current.table.columns
                if c.name not in dropped
            ),
        )
        with current.engine.begin() as conn:
            current.meta.create(conn, checkfirst=True)
            old.create(conn)
            conn.execute(
                current.meta.insert().values(table_name=table_name, layout_version=0, columns="")
            )
            conn.execute(
                old.insert().values(run_id="old", feature="amount", window_key="-", pane=0)
            )
    with SqlHistory(url, table_name) as h:
        assert sorted(h.migrate()) == ["hellinger", "mle_fit", "psi"]
        assert h.layout_version() == SQL_LAYOUT_VERSION
        assert h.migrate() == []  # up to date now
        h.write(drift_table("new", hours=1))
        rows = {r["run_id"]: r for r in h.read()}
    assert rows["old"]["psi"] is None
    assert rows["new"]["psi"] is not None


def test_newer_layout_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'drift.db'}"
    with SqlHistory(url) as h:
        h.migrate()
        with h.engine.begin() as conn:
            conn.execute(h.meta.update().values(layout_version=SQL_LAYOUT_VERSION + 1))
    with SqlHistory(url) as h, pytest.raises(SqlHistoryError, match="newer than this"):
        h.migrate()


def test_foreign_table_is_refused(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'drift.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE drift_records (id INTEGER)"))
    engine.dispose()
    with SqlHistory(url) as h, pytest.raises(SqlHistoryError, match="not a divtransforms"):
        h.migrate()


def test_bad_url_is_a_clear_error_without_password():
    with pytest.raises(SqlHistoryError) as err:
        SqlHistory("nosuchdb://user:hunter2@host/db")
    assert "hunter2" not in str(err.value)


def test_unreachable_database_names_the_url_without_password():
    from flows.cli.server import free_port

    url = f"postgresql+psycopg://u:hunter2@127.0.0.1:{free_port()}/x?connect_timeout=2"
    with SqlHistory(url) as h, pytest.raises(SqlHistoryError) as err:
        h.migrate()
    assert "hunter2" not in str(err.value) and "127.0.0.1" in str(err.value)


def test_key_columns_are_the_primary_key(tmp_path):
    import sqlalchemy as sa

    with SqlHistory(f"sqlite:///{tmp_path / 'd.db'}") as h:
        h.migrate()
        pk = sa.inspect(h.engine).get_pk_constraint("drift_records")["constrained_columns"]
    assert tuple(pk) == KEY_COLUMNS


def test_details_are_json_with_non_finite_markers(tmp_path):
    from divtransforms.flat_records import flatten_record

    rec = drift_table("r", hours=1).to_pylist()[0]
    rec["tests"] = [
        {
            "name": "h",
            "kind": "histogram",
            "statistic": float("inf"),
            "p_value": float("nan"),
            "effect": 0.1,
        }
    ]
    rec["js_divergence"] = float("nan")
    row = flatten_record(rec)
    details = json.loads(row["details"])
    assert details["tests"][0]["statistic"] == "Infinity"
    assert details["tests"][0]["p_value"] == "NaN"
    assert row["js_divergence"] is None
