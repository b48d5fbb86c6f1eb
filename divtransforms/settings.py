"""The settings of a check and of a reference build, each one frozen object (no Beam).

:class:`CheckSettings` is how a check windows and judges its data; :class:`BuildSettings` is how
a reference build chooses, bins and windows its features. Every driver takes them whole:
``compare()``, the in-process engine and the watcher (through ``compare.WindowDriver``), the Beam
``DriftMonitor`` and ``BuildReference``, the core's ``ProfileBuilder`` and the jobs
(``pipelines.spec.CheckJob.settings``, ``BuildJob.settings``). The public calls keep their
keyword arguments: ``compare(reference, data, window="1h", ...)``,
``ReferenceProfile.build(data, window="1h", ...)`` and ``DriftMonitor(profile, window="1h", ...)``
take a ``settings`` object, the fields as keyword arguments, or both (the keywords win);
:meth:`CheckSettings.of` and :meth:`BuildSettings.of` do that (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self

from divtransforms.columns import duration_micros, parse_duration

if TYPE_CHECKING:
    from divtransforms.eventtime import Horizon

__all__ = ["DEFAULT_ALPHA", "BuildSettings", "CheckSettings"]

#: Pseudo-counts per bin of the smoothed divergences (KL, cross-entropy, PSI).
DEFAULT_ALPHA = 0.5

Duration = str | float | timedelta


@dataclass(frozen=True)
class _Settings:
    """What both settings classes share."""

    @classmethod
    def of(cls, settings: Self | None = None, caller: str = "", **options: Any) -> Self:
        """``settings`` (None: the defaults) with the fields named in ``options`` replaced: what
        a public call that takes a ``settings`` object and its fields as keyword arguments
        does. An unknown name is a TypeError naming ``caller``, as for a keyword argument."""
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            name = caller or cls.__name__
            raise TypeError(f"{name}() got an unexpected keyword argument {unknown[0]!r}")
        base = settings if settings is not None else cls()
        return dataclasses.replace(base, **options) if options else base


@dataclass(frozen=True)
class CheckSettings(_Settings):
    """How a check windows and judges its data (the same for every driver).

    - ``window`` (``"1h"``, seconds, a timedelta) with ``timestamp_column``: event-time fixed
      windows aligned to the epoch; ``None``: one window of all the data. ``timestamp_format``
      reads event times of another layout (``divtransforms.eventtime.parse_event_times``);
      ``allowed_lateness``: how long a streaming window stays open after its end.
    - ``max_future``, ``max_age`` (durations; ``None`` or ``"off"``: no bound): the plausible
      event times around ``now`` (epoch seconds; ``None``: the wall clock at each batch), see
      :meth:`horizon`.
    - ``alpha`` (pseudo-counts per bin) and ``base`` (of the logarithms) of the divergences;
      ``policy``: ``"default"``, a ``Policy`` (any object with ``assess``/``explain``) or
      ``None`` (no severities).
    - ``run_id``: the records' run id (``None``: a new one per run).
    - ``season`` and ``between_windows``: how a windowed reference judges a window
      (``divtransforms.variation``; ``between_windows`` None: on for a windowed reference).
    """

    window: Duration | None = None
    timestamp_column: str | None = None
    timestamp_format: str | None = None
    allowed_lateness: Duration | None = None
    max_future: Duration | None = None
    max_age: Duration | None = None
    now: float | None = None
    alpha: float = DEFAULT_ALPHA
    base: float = 2.0
    policy: Any = "default"
    run_id: str | None = None
    season: str | None = None
    between_windows: bool | None = None

    @property
    def window_micros(self) -> int | None:
        """The window's length in microseconds (``None``: no window)."""
        return duration_micros(self.window) if self.window is not None else None

    @property
    def lateness_micros(self) -> int:
        return duration_micros(self.allowed_lateness) if self.allowed_lateness else 0

    def horizon(self) -> Horizon | None:
        """The plausible event times (``divtransforms.window.horizon_of``); None: unbounded."""
        from divtransforms.window import horizon_of

        return horizon_of(self.max_future, self.max_age, self.now)


@dataclass(frozen=True)
class BuildSettings(_Settings):
    """How a reference build chooses, bins and windows its features.

    - Which features: ``features`` (default every numeric or categorical column but
      ``exclude``), ``kinds`` (``{column: numeric|categorical}`` over the inferred kind),
      ``families`` (``{feature: family|None}``; default inferred, ``None``: no MLE).
    - Bins: ``n_bins`` (a number, or ``ReferenceProfile.build``'s ``{feature: number}``),
      ``strategy`` (``quantile`` or ``uniform``), ``top_n`` categories, explicit ``edges`` per
      numeric feature; ``exact`` quantile edges (``None``: decided by size on Beam; in process
      always exact).
    - The reference's own windows (``divtransforms.variation``): ``window`` (a duration) with
      ``timestamp_column`` (and ``timestamp_format``), or ``chunk`` rows.
    """

    features: Sequence[str] | None = None
    kinds: Mapping[str, str] | None = None
    exclude: Sequence[str] = ()
    families: Mapping[str, str | None] | None = None
    n_bins: int | Mapping[str, int] = 32
    strategy: str = "quantile"
    top_n: int = 50
    edges: Mapping[str, Sequence[float]] | None = None
    exact: bool | None = None
    timestamp_column: str | None = None
    window: Duration | None = None
    chunk: int | None = None
    timestamp_format: str | None = None

    @property
    def window_seconds(self) -> float | None:
        """The reference window's length in seconds (``None``: no event-time windows)."""
        return parse_duration(self.window) if self.window is not None else None

    @property
    def windowed(self) -> bool:
        """Whether the build also summarises the reference's own windows."""
        return self.window is not None or self.chunk is not None
