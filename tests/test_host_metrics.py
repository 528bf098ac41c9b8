"""``toysae.host_metrics``: the recovered fraction and the ground-truth split on hand-made
dictionaries, and hostile input refused."""

import numpy as np
import pytest

from toysae._threads import torch_threads
from toysae.host_metrics import ground_truth_split, recovered_fraction


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):
        yield


def test_metrics_on_hand_made_dictionaries():
    F = np.eye(4)
    assert recovered_fraction(F, F) == 1.0
    assert recovered_fraction(F, F[:1]) == 0.25
    tilted = np.array([[1.0, 1.0, 0, 0]])  # cos 0.707 with features 0 and 1
    assert recovered_fraction(F, tilted) == 0.0
    split = ground_truth_split(F, F[:2], [0, 1], [2, 3])
    assert split["functional_mmcs"] == 1.0 and split["nuisance_recovered"] == 0.0
    with pytest.raises(ValueError, match="nuisance"):
        ground_truth_split(F, F, [0], [])


def test_host_metrics_refuse_hostile_input():
    F = np.eye(4)
    assert recovered_fraction(1e200 * F, 1e-200 * F) == 1.0  # no overflow, no underflow
    with pytest.raises(TypeError, match="features must be real"):
        recovered_fraction(F + 1j, F)
    with pytest.raises(ValueError, match="dictionary has no rows"):
        recovered_fraction(F, np.zeros((0, 4)))
    with pytest.raises(TypeError, match=r"functional must hold int indices, got 0\.5"):
        ground_truth_split(F, F, [0.5, 1], [2, 3])  # once truncated to feature 0
    with pytest.raises(TypeError, match="nuisance must hold int indices, got True"):
        ground_truth_split(F, F, [0, 1], [True, False, False, True])  # a mask, not indices
    with pytest.raises(ValueError, match=r"functional index 4 is out of range \[0, 4\)"):
        ground_truth_split(F, F, [4], [2, 3])
