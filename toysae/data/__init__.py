"""Ground truth: features, firing probabilities, correlation, hierarchy, the generator,
and the interface every ground-truth world offers (``GroundTruthData``)."""

from toysae.data.config import SyntheticConfig
from toysae.data.generator import SyntheticData
from toysae.data.source import Batch, GroundTruthData

__all__ = ["Batch", "GroundTruthData", "SyntheticConfig", "SyntheticData"]
