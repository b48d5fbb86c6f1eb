"""Local streaming: watch a directory for new data files and keep drift records up to date.

Beam's local streaming runner cannot run a file-watching source (``fileio.MatchContinuously`` is
a splittable DoFn that ``BundleBasedDirectRunner`` rejects), so the watcher is a small loop around
the same pieces the Beam jobs use: ``pipelines.io`` reads each new file in batches,
``split_by_window`` assigns event-time windows, ``feature_stats_of_batch`` bins and fits, and
the core's window driver (``divtransforms.compare.WindowDriver``, as ``compare()`` and the
in-process engine) makes the records. Semantics follow the streaming ``DriftMonitor``:

- panes accumulate: every poll that touches a window re-emits that window's record with the next
  pane number and all its data so far (records are idempotent per (feature, window, pane));
- the watermark is the largest event time seen; a window closes once the watermark passes its end
  plus ``allowed_lateness``; later rows for it are not merged but counted (``dropped_late`` in
  the state file and the log), never silently lost;
- the running MLE of window W merges the seed state and every window starting at or before W.

Files must appear atomically (write elsewhere, then rename into the directory); names starting
with ``_`` or ``.`` are ignored.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from divtransforms.compare import WindowDriver
from divtransforms.eventtime import parse_event_times
from divtransforms.records import atomic_write_bytes, records_to_table, write_records_parquet
from divtransforms.running import mle_state_bytes
from divtransforms.settings import CheckSettings
from divtransforms.window import FeatureStats, feature_stats_of_batch, when
from pipelines.spec import CheckJob, CheckJobError, load_reference

__all__ = ["DirectoryWatcher", "watch_directory"]

_LOG = logging.getLogger(__name__)


class DirectoryWatcher:
    """The watcher's state; :meth:`poll` processes the files that appeared since the last call.

    ``settings`` (``divtransforms.settings.CheckSettings``) must have a ``window`` and a
    ``timestamp_column``; ``allowed_lateness`` keeps a window open after its end. The windows,
    panes and running estimates are the core's window driver's (``compare.WindowDriver``).
    ``csv``: the ``pipelines.io.CsvDialect`` of CSV files (None: delimiters sniffed).
    """

    def __init__(
        self,
        profile: Any,
        directory: str,
        output_dir: str,
        settings: CheckSettings,
        *,
        input_format: str | None = None,
        csv: Any = None,
        mle_state: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        if settings.window is None or not settings.timestamp_column:
            raise CheckJobError("watching a directory needs a directory, a window and a timestamp")
        self.profile = profile
        self.directory = directory
        self.output_dir = output_dir
        self.input_format = input_format
        self.csv = csv
        self._driver = WindowDriver(profile, settings, mle_state=mle_state)
        self.settings = settings
        self.run_id = self._driver.run_id
        self.timestamp_column: str = settings.timestamp_column
        self.window_micros: int = self._driver.size or 0
        self.lateness_micros = settings.lateness_micros
        self.seen: set[str] = set()
        self.watermark: int | None = None
        self.dropped_late = 0
        self.no_event_time = 0

    @classmethod
    def for_job(cls, job: CheckJob) -> DirectoryWatcher:
        """The watcher of a check job whose source is a watched directory."""
        if not job.source.watch_directory or job.window is None or not job.timestamp_column:
            raise CheckJobError("watching a directory needs a directory, a window and a timestamp")
        return cls(
            load_reference(job.reference),
            str(job.source.watch_directory),
            str(job.output),
            job.settings,
            input_format=job.source.input_format,
            csv=job.source.csv,
            mle_state=job.mle_state,
        )

    @property
    def windows(self) -> dict[Any, FeatureStats]:
        """The open windows' statistics so far (by start, epoch microseconds)."""
        return self._driver.windows

    def new_files(self) -> list[str]:
        names = sorted(
            n
            for n in os.listdir(self.directory)
            if not n.startswith(("_", ".")) and n not in self.seen
        )
        return [
            os.path.join(self.directory, n)
            for n in names
            if os.path.isfile(os.path.join(self.directory, n))
        ]

    def poll(self) -> list[dict[str, Any]]:
        """Read new files, update their windows, write and return the new records."""
        from pipelines import io as pio

        touched: set[int] = set()
        columns = [*self.profile.features, self.timestamp_column]
        numeric = [n for n, fp in self.profile.features.items() if fp.kind == "numeric"]
        for path in self.new_files():
            self.seen.add(os.path.basename(path))
            tasks = pio.plan_reads(
                [path],
                input_format=self.input_format,
                csv=self.csv,
                columns=columns,
                numeric=numeric,
                require_columns=False,
            )
            for task in tasks:
                for batch in pio.read_task(task):
                    touched |= self._add(batch)
            _LOG.info("watch: read %s", path)
        records = self._emit(sorted(touched))
        self._save_state()
        return records

    def _add(self, batch) -> set[int]:
        touched = set()
        driver = self._driver
        parts, bad = driver.split(batch)
        if bad is not None:
            self.no_event_time += bad.count
            _LOG.warning("watch: %s", bad.message())
        for start, part in parts:
            assert start is not None  # a watcher always has a window
            if self._closed(start):
                self.dropped_late += part.num_rows
                _LOG.warning(
                    "watch: %d rows for the closed window starting %s are too late "
                    "(allowed lateness %s)",
                    part.num_rows,
                    when(start),
                    timedelta(microseconds=self.lateness_micros),
                )
                continue
            driver.add(start, feature_stats_of_batch(self.profile.features, part, driver.known))
            touched.add(start)
        if touched:
            micros, ok, _ = parse_event_times(
                batch.column(batch.schema.get_field_index(self.timestamp_column)),
                self.timestamp_column,
                self.settings.timestamp_format,
                window_micros=self.window_micros,
                horizon=driver.horizon,  # an implausible time never moves the watermark
            )
            latest = int(micros[ok].max())
            self.watermark = latest if self.watermark is None else max(self.watermark, latest)
        return touched

    def _closed(self, start: int) -> bool:
        return (
            self.watermark is not None
            and start + self.window_micros + self.lateness_micros <= self.watermark
        )

    def _emit(self, starts: list[int]) -> list[dict[str, Any]]:
        from pipelines.sinks import _write_table, join

        out = self._driver.emit(starts)
        for rec in out:
            name, pane = rec["feature"], rec["pane"]
            stamp = rec["window_start"].strftime("%Y%m%dT%H%M%S")
            path = join(self.output_dir, f"records-{self.run_id}-{name}-{stamp}-p{pane}.parquet")
            if "://" in path:
                _write_table(records_to_table([rec]), path, False)
            else:
                write_records_parquet(records_to_table([rec]), path)
        return out

    def state(self) -> dict[str, dict[str, Any]]:
        return self._driver.state()

    def _save_state(self) -> None:
        atomic_write_bytes(
            os.path.join(self.output_dir, "_state", f"watch-{self.run_id}.json"),
            mle_state_bytes(
                self.state(),
                files_seen=sorted(self.seen),
                dropped_late=self.dropped_late,
                no_event_time=self.no_event_time,
                watermark=when(self.watermark).isoformat() if self.watermark is not None else None,
            ),
        )


def watch_directory(job: CheckJob) -> DirectoryWatcher:
    """Poll ``job.source.watch_directory`` every ``watch_interval`` seconds (until
    ``watch_stop_after`` seconds, or Ctrl-C), writing records to ``job.output``."""
    source, output_dir = job.source, str(job.output)
    interval, stop_after = source.watch_interval, source.watch_stop_after
    watcher = DirectoryWatcher.for_job(job)
    os.makedirs(output_dir, exist_ok=True)
    deadline = None if stop_after is None else time.monotonic() + stop_after
    try:
        while True:
            records = watcher.poll()
            if records:
                _LOG.info(
                    "watch: %d records (%d windows open, watermark %s)",
                    len(records),
                    len(watcher.windows),
                    watcher.watermark and when(watcher.watermark),
                )
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(
                interval
                if deadline is None
                else max(0.0, min(interval, deadline - time.monotonic()))
            )
    except KeyboardInterrupt:
        _LOG.info("watch: stopped")
    return watcher
