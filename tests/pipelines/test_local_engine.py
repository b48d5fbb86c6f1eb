"""The in-process engine (pipelines.local) against the Beam jobs: the same records, bit for bit,
and the same reference bins and counts; divmon picks it only when no Beam option is given."""

from __future__ import annotations

import json
import sys

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from divtransforms import ReferenceProfile
from pipelines import cli
from pipelines.check_job import CheckJob, Source, run_check
from pipelines.engine import check_in_process
from pipelines.local import run_build_local, run_check_local
from pipelines.reference_job import run_build_reference
from pipelines.spec import BuildJob
from tests.helpers import close, make_current, make_reference, table_rows

pytestmark = pytest.mark.beam


@pytest.fixture
def files(tmp_path, rng):
    pq.write_table(make_reference(rng, 6000), tmp_path / "ref.parquet", row_group_size=1000)
    pq.write_table(make_current(rng, 9000, hours=4), tmp_path / "cur.parquet", row_group_size=700)
    return tmp_path


@pytest.mark.parametrize("window", [None, "1h"])
@pytest.mark.parametrize("schema_change", [False, True])
def test_local_check_records_are_the_beam_records_bit_for_bit(
    files, profile, window, schema_change
):
    current = files / "cur.parquet"
    if schema_change:  # a feature missing, a column the reference never saw
        table = pq.read_table(current)
        table = table.drop(["amount"]).append_column("extra", table.column("x"))
        current = files / "changed.parquet"
        pq.write_table(table, current, row_group_size=700)
    job = CheckJob(
        profile,
        Source((str(current),)),
        window=window,
        timestamp_column="ts" if window else None,
        run_id="same",
        output=str(files / "out"),
        mle_state={},
    )
    local = run_check_local(job)
    beam = run_check(job, ["--runner=FnApiRunner"])
    diffs = close(table_rows(local.records), table_rows(beam.records), rtol=0.0)
    assert not diffs, diffs[:10]
    assert local.mle_state == beam.mle_state
    assert local.per_feature == beam.per_feature
    assert local.n_rows_read == beam.n_rows_read == 9000
    for key in ("rows", "samples", "missing", "invalid"):
        assert local.metrics.get(key) == beam.metrics.get(key), key
    state = json.loads((files / "out" / "_state" / "mle-same.json").read_text())
    assert state["features"] == local.mle_state


def test_local_build_equals_the_beam_build(files):
    ref = str(files / "ref.parquet")
    local = run_build_local(BuildJob([ref], str(files / "local.json"), exclude=["ts"]))
    beam = run_build_reference(
        BuildJob([ref], str(files / "beam.json"), exact=True, exclude=["ts"])
    )
    assert local.features.keys() == beam.features.keys()
    for name, fp in beam.features.items():
        assert local.features[name].histogram == fp.histogram, name
        assert local.features[name].family == fp.family, name
    assert ReferenceProfile.load(files / "local.json") == local


def test_local_build_reads_csv(files, rng):
    table = make_reference(rng, 3000)
    pcsv.write_csv(table, files / "ref.csv")
    local = run_build_local(BuildJob([str(files / "ref.csv")], None))
    expected = ReferenceProfile.build(table)
    for name, fp in expected.features.items():
        assert local.features[name].histogram == fp.histogram, name


def test_divmon_uses_the_local_engine_unless_a_runner_is_given(files, profile, capsys):
    ref = files / "ref.json"
    profile.save(ref)
    job = CheckJob(str(ref), Source((str(files / "cur.parquet"),)), output=str(files / "o"))
    assert check_in_process(job, [])
    assert not check_in_process(job, ["--runner=FnApiRunner"])
    gs = CheckJob(str(ref), Source(("gs://bucket/cur.parquet",)), output=str(files / "o"))
    assert not check_in_process(gs, [])
    bq = CheckJob(
        str(ref), Source((str(files / "cur.parquet"),)), output=str(files / "o"),
        bigquery_table="p.d.t",
    )  # fmt: skip
    assert not check_in_process(bq, [])
    parser = cli_parser()
    args, extra = parser.parse_known_args(
        ["reference", "build", "-i", str(files / "ref.parquet"), "-o", str(files / "r.json")]
    )
    assert args.handler(args, extra) == 0
    assert "apache_beam" in sys.modules  # (imported by this test module's fixtures anyway)
    out = capsys.readouterr().out
    assert "wrote" in out


def test_missing_column_names_the_file(files):
    with pytest.raises(
        ValueError, match=r"features \['nope'\] are not in \S*/ref.parquet \(columns: "
    ):
        job = BuildJob([str(files / "ref.parquet")], kinds={"nope": "numeric"}, features=["nope"])
        run_build_local(job)


def test_no_matching_files_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no input files match"):
        run_build_local(BuildJob([str(tmp_path / "absent-*.parquet")], None))


def cli_parser():
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    return parser


def test_build_without_cache_reads_again_and_gives_the_same_profile(files):
    ref = str(files / "ref.parquet")
    cached = run_build_local(BuildJob([ref], None, exclude=["ts"]))
    reread = run_build_local(BuildJob([ref], None, exclude=["ts"], cache_mb=0))
    assert reread.features.keys() == cached.features.keys()
    for name, fp in cached.features.items():
        assert reread.features[name].to_dict() == fp.to_dict(), name


def test_text_read_as_dictionaries_gives_what_plain_text_gives(files, profile, monkeypatch, rng):
    """Small-vocabulary text columns are read as dictionaries (counted on codes); an
    identifier-like column (a big dictionary page: the writer may fall back to plain pages) is
    read as plain text. The profile and the records are the same either way."""
    from pipelines import io as pio

    n = 20_000  # distinct identifiers: a dictionary page over DICTIONARY_PAGE_BYTES
    ids = make_current(rng, n).append_column(
        "user", pa.array([f"u{i:08d}" for i in rng.permutation(n)])
    )
    pq.write_table(ids, files / "ids.parquet")
    pf = pio._parquet_file(str(files / "ids.parquet"))
    assert pa.types.is_dictionary(pf.schema_arrow.field("color").type)
    assert pf.schema_arrow.field("user").type == pa.string()

    def both(fn):
        coded = fn()
        with monkeypatch.context() as m:
            m.setattr(pio, "DICTIONARY_PAGE_BYTES", 0)
            assert pio._dictionary_columns(pio._parquet_file(str(files / "ids.parquet"))) == []
            plain = fn()
        return coded, plain

    ref = str(files / "ref.parquet")
    coded, plain = both(lambda: run_build_local(BuildJob([ref], None, exclude=["ts"])))
    assert {n: f.to_dict() for n, f in coded.features.items()} == {
        n: f.to_dict() for n, f in plain.features.items()
    }
    job = CheckJob(
        profile, Source((str(files / "ids.parquet"),)), run_id="same", mle_state={}
    )  # fmt: skip
    coded, plain = both(lambda: run_check_local(job))
    assert not close(table_rows(coded.records), table_rows(plain.records), rtol=0.0)


def test_both_engines_apply_the_plausibility_horizon(files, profile):
    """Issue 26: the horizon is applied where every driver windows rows. Rows dated 2286 are in
    no window on Beam as in this process (same records, same counts); a file of nothing but
    such rows fails either engine, naming the file."""
    table = pq.read_table(files / "cur.parquet")
    far = pa.array([10**16 + i for i in range(300)]).cast(table.schema.field("ts").type)
    mixed = pa.concat_tables([table, table.slice(0, 300).set_column(3, "ts", far)])
    pq.write_table(mixed, files / "mixed.parquet", row_group_size=700)
    job = CheckJob(profile, Source((str(files / "mixed.parquet"),)), window="1h",
                   timestamp_column="ts", run_id="same", mle_state={})  # fmt: skip
    local = run_check_local(job)
    beam = run_check(job, ["--runner=FnApiRunner"])
    diffs = close(table_rows(local.records), table_rows(beam.records), rtol=0.0)
    assert not diffs, diffs[:10]
    for result in (local, beam):
        assert result.metrics["implausible_event_time"] == 300, result.metrics
        assert sum(r["n"] + r["n_missing"] + r["n_invalid"]
                   for r in result.records.to_pylist() if r["feature"] == "x") == 9000  # fmt: skip
    pq.write_table(mixed.slice(9000), files / "all-2286.parquet")
    job = CheckJob(profile, Source((str(files / "all-2286.parquet"),)), window="1h",
                   timestamp_column="ts", run_id="same")  # fmt: skip
    for run in (run_check_local, lambda j: run_check(j, ["--runner=FnApiRunner"])):
        with pytest.raises(Exception, match=r"all-2286.parquet: all 300 row\(s\) have an event "):
            run(job)


def _dialect_copy(files, table: pa.Table, name: str, sep: str, quote: str, encoding: str):
    """``table`` as CSV text written with ``sep``, ``quote`` and ``encoding`` (a country with
    an accent, quoted, so the encoding and the quoting matter)."""
    rows = [sep.join(table.column_names)]
    for r in table.to_pylist():
        cells = []
        for k, v in r.items():
            if k == "ts":
                v = v.isoformat()
            elif k == "color":
                v = f"{quote}{v};,é{quote}"  # delimiters inside quotes
            cells.append(str(v) if v is not None else "")
        rows.append(sep.join(cells))
    path = files / name
    path.write_bytes(("\n".join(rows) + "\n").encode(encoding))
    return path


def test_csv_dialects_are_honoured_by_both_engines_and_sniffed(files, rng, caplog):
    """Issue 26: a semicolon CSV with single quotes in latin-1 checks like the same data with
    commas in UTF-8, in this process and on Beam; the delimiter is sniffed (and logged) when
    not given; a wrong dialect's error names the file."""
    from pipelines.io import CsvDialect

    table = make_current(rng, 1500, hours=2)
    plain = _dialect_copy(files, table, "plain.csv", ",", '"', "utf-8")
    semi = _dialect_copy(files, table, "semi.csv", ";", "'", "latin-1")
    reference = ReferenceProfile.build(
        pcsv.read_csv(plain).drop(["ts"]), kinds={"color": "categorical"}
    )

    def job(path, dialect=None):
        return CheckJob(reference, Source((str(path),), csv=dialect), window="1h",
                        timestamp_column="ts", run_id="same", mle_state={})  # fmt: skip

    want = run_check_local(job(plain))
    dialect = CsvDialect(delimiter=";", quote="'", encoding="latin-1")
    got = run_check_local(job(semi, dialect))
    beam = run_check(job(semi, dialect), ["--runner=FnApiRunner"])
    for other in (got, beam):
        diffs = close(table_rows(want.records), table_rows(other.records), rtol=0.0)
        assert not diffs, diffs[:10]
    assert {r["feature"]: r["n_unseen"] for r in want.records.to_pylist()}["color"] == 0
    with caplog.at_level("INFO", logger="pipelines.io"):
        sniffed = run_check_local(job(semi, CsvDialect(quote="'", encoding="latin-1")))
    assert not close(table_rows(want.records), table_rows(sniffed.records), rtol=0.0)
    said = [r.getMessage() for r in caplog.records if "CSV delimiter" in r.getMessage()]
    assert said and str(semi) in said[0] and "';'" in said[0] and "sniffed" in said[0], said
    with pytest.raises(ValueError, match=r"semi.csv: feature 'ts' is not a column .*delimiter"):
        run_check_local(job(semi, CsvDialect(delimiter="|", encoding="latin-1")))
    with pytest.raises(ValueError, match=r"semi.csv: cannot read CSV .*; read with delimiter .,."):
        run_check_local(job(semi, CsvDialect(delimiter=",", encoding="latin-1")))
    with pytest.raises(ValueError, match=r"semi.csv: column .color. is not utf-8 text"):
        run_check_local(job(semi, CsvDialect(delimiter=";", quote="'")))
