"""The Pub/Sub path without Pub/Sub: JSON messages -> event times -> Arrow batches -> records."""

from __future__ import annotations

import json

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.testing.util import assert_that
from apache_beam.utils.timestamp import Timestamp

from divtransforms import compare
from divtransforms.beam.transforms import DriftMonitor
from pipelines.beam_io import _MessagesToTimestampedRows
from pipelines.io import EVENT_TIME_COLUMN, InputError, messages_to_batch
from tests.helpers import T0, local_pipeline, records_match

pytestmark = pytest.mark.beam


def _messages(rng, n):
    out = []
    for i in range(n):
        row = {
            "x": float(rng.normal()),
            "amount": float(rng.lognormal()),
            "color": str(rng.choice(["red", "blue"])),
            "ts": T0 + 30.0 * i,
        }
        if i % 17 == 0:
            row["x"] = "n/a"  # wrong type: counted invalid
        if i % 23 == 0:
            del row["amount"]  # absent field: missing
        out.append(PubsubMessage(json.dumps(row).encode(), {}))
    return out


def test_event_time_from_field_or_publish_time():
    fn = _MessagesToTimestampedRows("ts")
    (tv,) = fn.process(PubsubMessage(b'{"x": 1, "ts": "2023-11-14T22:13:20Z"}', {}))
    assert tv.timestamp == Timestamp(T0) and tv.value[EVENT_TIME_COLUMN] == T0 * 10**6
    (tv,) = _MessagesToTimestampedRows(None).process(
        PubsubMessage(b'{"x": 1}', {}), timestamp=Timestamp(T0 + 5)
    )
    assert tv.value[EVENT_TIME_COLUMN] == (T0 + 5) * 10**6
    with pytest.raises(InputError, match="not JSON"):
        list(fn.process(PubsubMessage(b"{oops", {})))
    with pytest.raises(InputError, match="no event time field 'ts'"):
        list(fn.process(PubsubMessage(b'{"x": 2}', {})))


def test_messages_to_batch_keeps_mixed_types_as_text():
    batch = messages_to_batch([{"x": 1.5, "c": "a"}, {"x": "bad"}, {"c": "b"}], ["x", "c"])
    assert batch.schema.field("x").type == pa.string()
    assert batch.column(1).to_pylist() == ["a", None, "b"]


def test_pubsub_rows_give_the_same_records_as_compare(profile, rng):
    messages = _messages(rng, 400)
    rows = [json.loads(m.data) for m in messages]
    # The same values as the messages carry: x as text where a message mixes in "n/a" (invalid
    # on both paths), absent amounts missing.
    table = pa.Table.from_pylist(
        [
            {
                "x": str(r["x"]),
                "amount": r.get("amount"),
                "color": r["color"],
                "ts": r["ts"],
            }
            for r in rows
        ]
    )
    expected = compare(profile, table, window="1h", timestamp_column="ts", run_id="ps")
    with local_pipeline() as p:
        records = (
            p
            | beam.Create(messages)
            | beam.ParDo(_MessagesToTimestampedRows("ts"))
            | beam.BatchElements(min_batch_size=50, max_batch_size=120)
            | beam.Map(messages_to_batch, ["x", "amount", "color"])
            | DriftMonitor(profile, window="1h", timestamp_column=EVENT_TIME_COLUMN, run_id="ps")
        )
        # Each Pub/Sub batch is typed on its own (x is numbers in a batch without "n/a", text in
        # one with it): the column types differ by design; every other field is equal.
        untyped = records | beam.Map(lambda r: {**r, "column_types": None})
        want = [{**r, "column_types": None} for r in expected.to_pylist()]
        assert_that(untyped, records_match(want))
