"""The Beam adapters of divtransforms (they import ``apache_beam``), in the style of
``apache_beam.transforms.stats``: the transforms a pipeline applies and the CombineFns under
them. ``import divtransforms`` does not load this package (docs/beam.md)."""

from divtransforms.beam.combiners import (
    ExactValuesFn,
    FeatureStatsFn,
    NumericSummaryFn,
    VocabularyFn,
)
from divtransforms.beam.reference import BuildReference
from divtransforms.beam.transforms import (
    AssignWindows,
    BinSamples,
    ComputeDivergence,
    DriftMonitor,
    RunningMLE,
    WindowStats,
)

__all__ = [
    "AssignWindows",
    "BinSamples",
    "BuildReference",
    "ComputeDivergence",
    "DriftMonitor",
    "ExactValuesFn",
    "FeatureStatsFn",
    "NumericSummaryFn",
    "RunningMLE",
    "VocabularyFn",
    "WindowStats",
]
