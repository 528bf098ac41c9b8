"""Ground truth: features, firing probabilities, correlation, hierarchy, the generator."""

from toysae.data.config import SyntheticConfig
from toysae.data.generator import Batch, SyntheticData

__all__ = ["Batch", "SyntheticConfig", "SyntheticData"]
