"""divtransforms: drift monitoring with entropy, KL and Jensen-Shannon divergence against a
reference, and running maximum-likelihood estimates.

This package's top level is the core (numpy/pyarrow/scipy, no Beam): ``import divtransforms`` is
cheap. The Beam transforms live in ``divtransforms.beam.transforms``.

``__all__`` holds what a user calls (``compare``, ``ReferenceProfile``, ``Policy``, the
divergences, ``read_records``, the settings ``compare()`` and ``ReferenceProfile.build`` take,
...). Plumbing that other layers use (``drift_record``, ``accumulator_for``,
``accumulator_from_dict``, ``bin_spec_from_dict``, ``js_bias``) is still importable from here and
from its module (imported ``as`` itself), but is not part of the star-import API.
"""

from divtransforms.bins import CategoricalBins, NumericBins
from divtransforms.bins import bin_spec_from_dict as bin_spec_from_dict
from divtransforms.compare import compare
from divtransforms.compare import drift_record as drift_record
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
    model_kl,
)
from divtransforms.mle import accumulator_for as accumulator_for
from divtransforms.mle import accumulator_from_dict as accumulator_from_dict
from divtransforms.policy import FeaturePolicy, Policy, PolicyError
from divtransforms.profile import FeatureProfile, ProfileError, ReferenceProfile
from divtransforms.records import DRIFT_RECORD_SCHEMA, read_records, records_to_table
from divtransforms.settings import BuildSettings, CheckSettings
from divtransforms.significance import homogeneity_test, mean_test
from divtransforms.significance import js_bias as js_bias

__version__ = "0.1.0"

__all__ = [
    "DRIFT_RECORD_SCHEMA",
    "FAMILIES",
    "BuildSettings",
    "CategoricalBins",
    "CheckSettings",
    "Estimate",
    "FeaturePolicy",
    "FeatureProfile",
    "Histogram",
    "NumericBins",
    "Policy",
    "PolicyError",
    "ProfileError",
    "ReferenceProfile",
    "__version__",
    "compare",
    "cross_entropy",
    "entropy",
    "hellinger",
    "homogeneity_test",
    "js_distance",
    "js_divergence",
    "kl_divergence",
    "mean_test",
    "model_kl",
    "psi",
    "read_records",
    "records_to_table",
]
