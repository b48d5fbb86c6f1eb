"""divtransforms: drift monitoring with entropy, KL and Jensen-Shannon divergence against a
reference, and running maximum-likelihood estimates.

This package's top level is the core (numpy/pyarrow/scipy, no Beam): ``import divtransforms`` is
cheap. The Beam transforms live in ``divtransforms.transforms``.
"""

from divtransforms.bins import CategoricalBins, NumericBins, bin_spec_from_dict
from divtransforms.compare import compare, drift_record
from divtransforms.divergence import (
    cross_entropy,
    entropy,
    hellinger,
    js_distance,
    js_divergence,
    kl_divergence,
    psi,
)
from divtransforms.histogram import Histogram
from divtransforms.mle import (
    FAMILIES,
    Estimate,
    accumulator_for,
    accumulator_from_dict,
    model_kl,
)
from divtransforms.profile import FeatureProfile, ProfileError, ReferenceProfile
from divtransforms.records import DRIFT_RECORD_SCHEMA, read_records, records_to_table
from divtransforms.significance import homogeneity_test, js_bias, mean_test

__version__ = "0.1.0"

__all__ = [
    "DRIFT_RECORD_SCHEMA",
    "FAMILIES",
    "CategoricalBins",
    "Estimate",
    "FeatureProfile",
    "Histogram",
    "NumericBins",
    "ProfileError",
    "ReferenceProfile",
    "__version__",
    "accumulator_for",
    "accumulator_from_dict",
    "bin_spec_from_dict",
    "compare",
    "cross_entropy",
    "drift_record",
    "entropy",
    "hellinger",
    "homogeneity_test",
    "js_bias",
    "js_distance",
    "js_divergence",
    "kl_divergence",
    "mean_test",
    "model_kl",
    "psi",
    "read_records",
    "records_to_table",
]
