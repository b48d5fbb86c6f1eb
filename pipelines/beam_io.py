"""The Beam transforms that read: ``ReadBatches`` (files, planned by ``pipelines.io.plan_reads``)
and ``ReadPubSubBatches`` (streaming). The readers themselves are Beam-free, in ``pipelines.io``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence

import apache_beam as beam
import pyarrow as pa

from divtransforms.eventtime import EVENT_TIME_COLUMN
from pipelines.io import (
    DEFAULT_BATCH_ROWS,
    CsvDialect,
    InputError,
    ReadTask,
    _parse_event_time,
    expand_inputs,
    messages_to_batch,
    plan_reads,
    read_task,
)

__all__ = ["ReadBatches", "ReadPubSubBatches"]

_LOG = logging.getLogger("pipelines.io")


class _ReadTaskFn(beam.DoFn):
    def __init__(self) -> None:
        from apache_beam.metrics import Metrics

        self._batches = Metrics.counter("divtransforms.io", "batches_read")
        self._rows = Metrics.counter("divtransforms.io", "rows_read")

    def process(self, task: ReadTask) -> Iterator[pa.RecordBatch]:
        for batch in read_task(task):
            self._batches.inc()
            self._rows.inc(batch.num_rows)
            yield batch


class ReadBatches(beam.PTransform):
    """Files (paths/globs) -> a PCollection of ``pyarrow.RecordBatch``.

    The read is planned when the pipeline is built (see :func:`plan_reads`); the tasks are
    redistributed so several workers read different row groups.
    """

    def __init__(
        self,
        inputs: str | Sequence[str],
        *,
        input_format: str | None = None,
        columns: Sequence[str] | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        numeric: Sequence[str] = (),
        require_columns: bool = True,
        csv: CsvDialect | None = None,
    ) -> None:
        super().__init__()
        self._tasks = plan_reads(
            expand_inputs(inputs),
            input_format=input_format,
            csv=csv,
            columns=columns,
            batch_rows=batch_rows,
            numeric=numeric,
            require_columns=require_columns,
        )
        _LOG.info(
            "reading %d file(s) in %d task(s)", len({t.path for t in self._tasks}), len(self._tasks)
        )

    def expand(self, pbegin):
        tasks = pbegin | "Plan" >> beam.Create(self._tasks)
        if len(self._tasks) > 1:
            tasks = tasks | "Spread" >> beam.Reshuffle()
        return tasks | "Read" >> beam.ParDo(_ReadTaskFn())


class _MessagesToTimestampedRows(beam.DoFn):
    """A Pub/Sub message (JSON object) -> the row, timestamped with its event time."""

    def __init__(self, event_time_field: str | None) -> None:
        self._field = event_time_field

    def process(self, message, timestamp=beam.DoFn.TimestampParam):
        from apache_beam.utils.timestamp import Timestamp

        data = message.data if hasattr(message, "data") else message
        try:
            row = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"Pub/Sub message is not JSON ({exc}): {data[:200]!r}") from exc
        if not isinstance(row, dict):
            raise InputError(f"Pub/Sub message is not a JSON object: {data[:200]!r}")
        if self._field:
            value = row.get(self._field)
            if value is None:
                raise InputError(f"Pub/Sub message has no event time field {self._field!r}")
            micros = _parse_event_time(value, self._field)
        else:
            micros = int(timestamp.micros)  # the publish time
        row[EVENT_TIME_COLUMN] = micros
        yield beam.window.TimestampedValue(row, Timestamp(micros=micros))


class ReadPubSubBatches(beam.PTransform):
    """Pub/Sub JSON messages -> timestamped, windowed RecordBatches (``--streaming``).

    The event time is ``event_time_field`` (epoch seconds or ISO 8601) or else the publish
    time. Rows are grouped into batches per window by ``BatchElements`` before binning.
    """

    def __init__(
        self,
        *,
        subscription: str | None = None,
        topic: str | None = None,
        event_time_field: str | None = None,
        columns: Sequence[str] | None = None,
        max_batch_size: int = 10_000,
    ) -> None:
        super().__init__()
        if bool(subscription) == bool(topic):
            raise InputError("give exactly one of a Pub/Sub subscription or topic")
        self._subscription, self._topic = subscription, topic
        self._field, self._columns, self._max = event_time_field, columns, max_batch_size

    def expand(self, pbegin):
        from apache_beam.io.gcp.pubsub import ReadFromPubSub

        messages = pbegin | "ReadPubSub" >> ReadFromPubSub(
            topic=self._topic, subscription=self._subscription
        )
        columns = list(self._columns) if self._columns else None
        return (
            messages
            | "EventTime" >> beam.ParDo(_MessagesToTimestampedRows(self._field))
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max)
            | "ToArrow" >> beam.Map(messages_to_batch, columns)
        )
