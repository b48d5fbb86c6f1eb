"""Streaming with TestStream (BundleBasedDirectRunner --streaming): event-time windows, watermark
firings, a late element within the allowed lateness, no sample lost or counted twice."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.testing.util import assert_that
from apache_beam.transforms.window import TimestampedValue

from divtransforms import compare
from divtransforms.beam.transforms import DriftMonitor
from tests.helpers import T0, assert_records_equal, records_match, table_rows

pytestmark = pytest.mark.beam

HOUR = 3600
H = T0 - T0 % HOUR  # an hour boundary


def _batch(rng, n, start, seconds=HOUR):
    ts = (start + rng.uniform(0, seconds, n)) * 1e6
    return pa.record_batch(
        {
            "x": rng.normal(0.3, 1.0, n),
            "amount": rng.lognormal(1.0, 0.5, n),
            "color": rng.choice(["red", "blue", "pink"], n),
            "ts": pa.array(ts.astype("int64")).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def _streaming_pipeline():
    return BeamTestPipeline(
        options=PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming"])
    )


def test_windows_watermark_and_late_data(profile, rng):
    on_time = pa.Table.from_batches([_batch(rng, 100, H), _batch(rng, 50, H + HOUR)])
    on_time_batch = on_time.combine_chunks().to_batches()[0]  # one batch spanning two windows
    late = _batch(rng, 30, H)  # window 0 again, after the watermark passed its end
    stream = (
        EventStream()
        .advance_watermark_to(H)
        .add_elements([TimestampedValue(on_time_batch, H)])
        .advance_watermark_to(H + 2 * HOUR + 1)  # both windows fire on time
        .add_elements([TimestampedValue(late, H + 2 * HOUR + 1)])
        .advance_watermark_to_infinity()
    )
    with _streaming_pipeline() as p:
        records = (
            p
            | stream
            | DriftMonitor(
                profile, window="1h", timestamp_column="ts", allowed_lateness="3h", run_id="s"
            )
        )
        assert_that(records, lambda rs: _check(rs, profile, on_time, late))


def _check(records, profile, on_time, late):
    rows = table_rows(records)
    panes = sorted(
        {
            (r["window_start"].timestamp(), r["pane"], r["n"] + r["n_missing"])
            for r in rows
            if r["feature"] == "x"
        }
    )
    # window 0: on-time pane with 100 samples, then a late pane with all 130 (accumulating);
    # window 1: one on-time pane with 50.
    assert panes == [(H, 0, 100), (H, 1, 130), (H + HOUR, 0, 50)], panes
    # nothing lost or double counted: the last pane of each window sums to what was sent
    for feature in profile.features:
        last = {}
        for r in rows:
            if r["feature"] == feature:
                key = r["window_start"]
                if key not in last or r["pane"] > last[key]["pane"]:
                    last[key] = r
        total = sum(r["n"] + r["n_missing"] + r["n_invalid"] for r in last.values())
        assert total == on_time.num_rows + late.num_rows, (feature, total)
    # The final panes equal compare() on all the data. The running MLE of window 1 was computed
    # when window 1 fired (window 0 then held its 100 on-time samples): a late pane updates its
    # own window's running estimate, not those of windows already emitted.
    everything = pa.concat_tables([on_time, pa.Table.from_batches([late])])
    expected = compare(profile, everything, timestamp_column="ts", window="1h", run_id="s")
    at_firing = compare(profile, on_time, timestamp_column="ts", window="1h", run_id="s")
    final = [r for r in rows if not (r["window_start"].timestamp() == H and r["pane"] == 0)]
    for r in final:
        r["pane"] = 0  # compare() has no panes
    w0 = [r for r in final if r["window_start"].timestamp() == H]
    w1 = [r for r in final if r["window_start"].timestamp() == H + HOUR]
    exp_rows = table_rows(expected)
    assert_records_equal(w0, [r for r in exp_rows if r["window_start"].timestamp() == H])
    assert_records_equal(
        w1, [r for r in table_rows(at_firing) if r["window_start"].timestamp() == H + HOUR]
    )
    # and the window part of window 1 (not the running part) equals the full-data result
    w1_full = [r for r in exp_rows if r["window_start"].timestamp() == H + HOUR]
    for a, b in zip(sorted(w1, key=lambda r: r["feature"]), w1_full, strict=True):
        assert a["counts"] == b["counts"] and a["js_divergence"] == b["js_divergence"]


def test_sum_of_window_counts_equals_samples_sent(profile, rng):
    batches = [
        _batch(rng, int(n), H + i * 1800, seconds=2400)
        for i, n in enumerate(rng.integers(20, 80, 8))
    ]
    stream = EventStream().advance_watermark_to(H)
    for i, b in enumerate(batches):
        stream = stream.add_elements([TimestampedValue(b, H + i * 1800)])
        stream = stream.advance_watermark_to(H + i * 1800 + 600)
    stream = stream.advance_watermark_to_infinity()
    sent = sum(b.num_rows for b in batches)

    def check(records):
        rows = [r for r in records if r["feature"] == "amount"]
        last = {}
        for r in rows:
            if r["window_start"] not in last or r["pane"] > last[r["window_start"]]["pane"]:
                last[r["window_start"]] = r
        assert sum(r["n"] + r["n_missing"] + r["n_invalid"] for r in last.values()) == sent
        starts = sorted(last)
        assert np.all(np.diff([s.timestamp() for s in starts]) % HOUR == 0)

    with _streaming_pipeline() as p:
        records = (
            p
            | stream
            | DriftMonitor(
                profile, window="1h", timestamp_column="ts", allowed_lateness="2h", run_id="s"
            )
        )
        assert_that(records, check)


def test_streaming_without_a_window_is_refused(profile):
    p = _streaming_pipeline()
    stream = EventStream().advance_watermark_to_infinity()
    with pytest.raises(ValueError, match="streaming DriftMonitor needs a window"):
        _ = p | stream | DriftMonitor(profile)


def test_running_mle_over_many_windows_equals_compare(profile, rng):
    """Windows fire in order, old ones are folded away; records still equal compare()."""
    batches = [_batch(rng, 40 + 5 * i, H + i * HOUR) for i in range(6)]
    stream = EventStream().advance_watermark_to(H)
    for i, b in enumerate(batches):
        stream = stream.add_elements([TimestampedValue(b, H + i * HOUR)])
        stream = stream.advance_watermark_to(H + (i + 1) * HOUR + 1)
    stream = stream.advance_watermark_to_infinity()
    everything = pa.Table.from_batches(batches)
    expected = compare(profile, everything, timestamp_column="ts", window="1h", run_id="m")
    x_all = everything.column("x").to_numpy()
    with _streaming_pipeline() as p:
        out = (
            p
            | stream
            | DriftMonitor(
                profile, window="1h", timestamp_column="ts", run_id="m", with_mle_state=True
            )
        )
        assert_that(out["records"], records_match(expected), label="records")
        assert_that(
            out["mle_state"], lambda states: _check_final_state(states, x_all), label="state"
        )


def _check_final_state(states, x_all):
    from divtransforms.mle import accumulator_from_dict

    final = max(states, key=lambda s: s["x"]["n"])
    acc = accumulator_from_dict(final["x"])
    assert acc.n == x_all.size
    assert np.isclose(acc.estimate().params["mu"], x_all.mean(), rtol=1e-12)
