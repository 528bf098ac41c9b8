"""Optimality conditions of dictionary learning (docs/theory.md).

Checkers work on ``(X, D, Z, lam)`` in the package layout, in float64, and
return report dataclasses whose violations are 0 when a condition holds.
"""

from toysae.theory.conditions import (
    AtomStationarityReport,
    BiasReport,
    CodeKKTReport,
    atom_stationarity,
    bias_condition,
    code_kkt,
)
from toysae.theory.decoder import (
    DecoderStationarityReport,
    decoder_stationarity,
    sae_decoder_stationarity,
)
from toysae.theory.hierarchy import HierarchyReport, HierarchyStep, hierarchy_certificate
from toysae.theory.matched_lam import MatchedLam, lam_for_l0, sae_lam_for_l0
from toysae.theory.pairs import HullSample, PairReport, pair_conditions
from toysae.theory.report import OptimalityReport, Tolerances, check_optimality
from toysae.theory.sae import (
    AmortisationReport,
    SAEOptimalityReport,
    amortisation_gap,
    check_sae,
    sae_codes,
    sae_dictionary,
)
from toysae.theory.wide_limit import WideLimitGap, WideLimitResult, wide_limit, wide_limit_gap

__all__ = [
    "AmortisationReport",
    "AtomStationarityReport",
    "BiasReport",
    "CodeKKTReport",
    "DecoderStationarityReport",
    "HierarchyReport",
    "HierarchyStep",
    "HullSample",
    "MatchedLam",
    "OptimalityReport",
    "PairReport",
    "SAEOptimalityReport",
    "Tolerances",
    "WideLimitGap",
    "WideLimitResult",
    "amortisation_gap",
    "atom_stationarity",
    "bias_condition",
    "check_optimality",
    "check_sae",
    "code_kkt",
    "decoder_stationarity",
    "hierarchy_certificate",
    "lam_for_l0",
    "pair_conditions",
    "sae_codes",
    "sae_decoder_stationarity",
    "sae_dictionary",
    "sae_lam_for_l0",
    "wide_limit",
    "wide_limit_gap",
]
