"""Privacy evaluation: closed-set face identification (paper Sec. VI-A, VII-B) and its tables.

Functions first, on arrays: :func:`sample_splits` draws gallery/probe indices, classifiers from
:data:`CLASSIFIERS` are fitted on gallery features only, :func:`identify_many` scores probe sets,
:func:`summarize` gives mean, std and a t-interval. :mod:`.evaluate` runs the whole E1/E2 loop on
the face pipeline's cached embeddings; :mod:`.tables` builds the paper's layouts.
"""

from .classifiers import (
    CLASSIFIERS,
    LinearConfig,
    LinearFit,
    NearestNeighbour,
    SoftmaxLinear,
    build_classifier,
    train_linear,
)
from .identification import FeatureSet, IdentificationResult, identify, identify_many
from .splits import IdentificationSplits, sample_splits, select_identities
from .stats import AccuracySummary, summarize

__all__ = [
    "CLASSIFIERS",
    "AccuracySummary",
    "FeatureSet",
    "IdentificationResult",
    "IdentificationSplits",
    "LinearConfig",
    "LinearFit",
    "NearestNeighbour",
    "SoftmaxLinear",
    "build_classifier",
    "identify",
    "identify_many",
    "sample_splits",
    "select_identities",
    "summarize",
    "train_linear",
]
