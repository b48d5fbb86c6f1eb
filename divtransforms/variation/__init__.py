"""Between-window variation: judge a window against the reference's own window-to-window spread.

Real feeds are not independent samples of one distribution: daily and weekly cycles, day-to-day
wander and rows grouped by place or batch move every window away from the pooled reference by
more than sampling noise. The question a monitor must answer is whether a window differs from the
reference *more than the reference's own windows differ from each other*. This module is the one
place where that is modelled (``docs/policy.md``, "Feeds that vary from window to window").

The package is in three parts:

* :mod:`divtransforms.variation.summary`: the windowed summary (:class:`WindowedSummary`), the
  reference's own windows, stored in the profile (schema version 4), exact and mergeable;
* :mod:`divtransforms.variation.model`: the variation model (:func:`estimate` ->
  :class:`FeatureVariation`) and the hooks of the tests (:func:`location_between`,
  :func:`histogram_between`);
* :mod:`divtransforms.variation.judge`: seasons and :class:`WindowJudge`, which judges a window
  against its season's part of the reference and the reference's own variation.
"""

from divtransforms.variation.judge import (
    DAY,
    HOUR,
    MIN_SEASON_WINDOWS,
    SEASONS,
    Judged,
    WindowJudge,
    season_label,
    season_of,
    window_judge,
)
from divtransforms.variation.model import (
    MIN_WINDOWS,
    FeatureVariation,
    between_basis,
    between_covariance,
    dersimonian_laird,
    estimate,
    estimate_without,
    histogram_between,
    location_between,
    scale_adjustment,
    standardised_shape,
)
from divtransforms.variation.summary import (
    FeatureWindows,
    WindowedSummary,
    WindowedSummaryBuilder,
    summary_of,
)

_summary_of = summary_of  # the name divtransforms.beam.reference imports

__all__ = [
    "DAY",
    "HOUR",
    "MIN_SEASON_WINDOWS",
    "MIN_WINDOWS",
    "SEASONS",
    "FeatureVariation",
    "FeatureWindows",
    "Judged",
    "WindowJudge",
    "WindowedSummary",
    "WindowedSummaryBuilder",
    "between_basis",
    "between_covariance",
    "dersimonian_laird",
    "estimate",
    "estimate_without",
    "histogram_between",
    "location_between",
    "scale_adjustment",
    "season_label",
    "season_of",
    "standardised_shape",
    "summary_of",
    "window_judge",
]
