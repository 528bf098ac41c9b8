"""Fixtures shared by the theory tests."""

from __future__ import annotations

import numpy as np
import pytest
from theory_helpers import LAM, learn_dictionary, unit_rows


@pytest.fixture(scope="session")
def learned():
    """A small dictionary learned to convergence (exactly stationary)."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3))
    D, Z, ok = learn_dictionary(X, unit_rows(rng.normal(size=(4, 3))), LAM)
    assert ok
    return X, D, Z
