"""``GroundTruthData``: what every consumer of a ground-truth world relies on.

A world is a source of activations ``x`` whose true features and codes are known:
``x = codes @ features + bias`` (plus the world's own noise, if any). toysae's
generator (:class:`toysae.data.SyntheticData`) is one; a SAELens ``SyntheticModel``
wrapped by ``toysae.interop.SAELensWorld`` is another. Training (``training_batches``,
``data_fingerprint``, ``train_sae``, ``train_grid``), the metrics and the experiments
read a world through this interface only, so each takes either.

A subclass supplies ``d``, ``n_features``, ``features``, ``bias``,
``hierarchy_pairs``, ``sample`` and ``fingerprint``; :meth:`batches` is built on
``sample``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from toysae._validation import check_int, check_seed, shifted_seed

__all__ = ["Batch", "GroundTruthData"]


class Batch(NamedTuple):
    """A batch of activations and the true codes that made them.

    x : (n, d) float32, ``x = codes @ features + bias (+ noise)``.
    codes : (n, n_features) float32, nonnegative; zero where a feature is off.
    """

    x: np.ndarray
    codes: np.ndarray


class GroundTruthData(ABC):
    """A world with known features: seeded samples of ``x`` and of the codes behind it."""

    @property
    @abstractmethod
    def d(self) -> int:
        """The dimension of ``x``."""

    @property
    @abstractmethod
    def n_features(self) -> int:
        """The number of true features."""

    @property
    @abstractmethod
    def features(self) -> np.ndarray:
        """(n_features, d) float32 true features, a copy."""

    @property
    @abstractmethod
    def bias(self) -> np.ndarray:
        """(d,) float32, added to every sample (zeros for a world without one)."""

    @property
    @abstractmethod
    def hierarchy_pairs(self) -> tuple:
        """``((parent, child), ...)`` feature indices of the world's hierarchy; ``()``
        when it has none (then there is nothing to measure absorption on)."""

    @abstractmethod
    def sample(self, n: int, seed: int | None = None) -> Batch:
        """Draw ``n`` samples. Without ``seed`` it continues this object's stream;
        with ``seed`` it is a fresh draw, the same for the same world and seed, that
        leaves the stream alone."""

    @abstractmethod
    def fingerprint(self) -> dict:
        """A JSON-able description that identifies the world (the same dict for the
        same samples), for run keys (``toysae.sae.train_state.data_fingerprint``)."""

    def batches(self, batch_size: int, n_batches: int | None = None,
                seed: int | None = None) -> Iterator[Batch]:
        """Iterate over batches of ``sample`` (forever when ``n_batches`` is None);
        with ``seed``, batch ``k`` is ``sample(batch_size, shifted_seed(seed, k, 1_000_003))``."""
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        if n_batches is not None:
            check_int(n_batches, "n_batches", minimum=0)
        if seed is not None:
            check_seed(seed)
        k = 0
        while n_batches is None or k < n_batches:
            yield self.sample(batch_size, None if seed is None else
                              shifted_seed(seed, k, 1_000_003))
            k += 1
