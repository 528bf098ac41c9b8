"""``toysae.data.source``: the interface of a ground-truth world, on a hand-made world with
a bias and on ``SyntheticData``; training and run keys take any world."""

import numpy as np
import pytest
import torch

from toysae._threads import torch_threads
from toysae.data import Batch, GroundTruthData, SyntheticConfig, SyntheticData
from toysae.sae import TrainConfig, train_sae
from toysae.sae.batches import data_dim, training_batches
from toysae.sae.train_state import data_fingerprint


class TwoFeatureWorld(GroundTruthData):
    """Two orthogonal features in 3-D, each on half the samples, with a bias."""

    def __init__(self):
        self.calls = 0

    d, n_features = 3, 2
    features = property(lambda self: np.eye(3, dtype=np.float32)[:2])
    bias = property(lambda self: np.array([0.0, 0.0, 0.5], dtype=np.float32))
    hierarchy_pairs = ((0, 1),)

    def sample(self, n, seed=None):
        if seed is None:
            seed, self.calls = 10**6 + self.calls, self.calls + 1
        codes = (np.random.default_rng(seed).random((n, 2)) < 0.5).astype(np.float32)
        return Batch(codes @ self.features + self.bias, codes)

    def fingerprint(self):
        return {"kind": "TwoFeatureWorld"}


def test_a_world_needs_every_part():
    class Partial(GroundTruthData):
        d = 3

    with pytest.raises(TypeError, match="abstract"):
        Partial()


def test_batches_are_seeded_samples():
    world = TwoFeatureWorld()
    batches = list(world.batches(5, n_batches=3, seed=7))
    again = list(TwoFeatureWorld().batches(5, n_batches=3, seed=7))
    assert len(batches) == 3 and all(b.x.shape == (5, 3) for b in batches)
    assert all(np.array_equal(a.codes, b.codes) for a, b in zip(batches, again, strict=True))
    assert not np.array_equal(batches[0].codes, batches[1].codes)
    assert world.calls == 0  # seeded batches leave the stream alone
    next(world.batches(5))
    assert world.calls == 1
    with pytest.raises(ValueError, match="batch_size"):
        next(world.batches(0))


def test_synthetic_data_is_a_world_without_bias():
    cfg = SyntheticConfig(d=6, n_features=10, mean_active=2.0, tree_roots=2, tree_depth=2)
    data = SyntheticData(cfg)
    assert isinstance(data, GroundTruthData)
    assert (data.d, data.n_features, data.hierarchy_pairs) == (6, 10, cfg.hierarchy_pairs)
    assert data.bias.shape == (6,) and not data.bias.any()
    batch = data.sample(50, seed=1)
    np.testing.assert_allclose(batch.x, batch.codes @ data.features + data.bias, atol=1e-5)
    # the run key of a SyntheticData stays its config, as checkpoints recorded it
    assert data_fingerprint(data) == {"kind": "SyntheticData", "config": cfg.to_dict()}


def test_training_takes_any_world():
    world = TwoFeatureWorld()
    config = TrainConfig(n_samples=64 * 40, batch_size=64, lr=1e-2, log_every=10, seed=3)
    batches, n_steps = training_batches(world, 3, config)
    first = next(batches)
    assert n_steps == 40 and first.shape == (64, 3)
    assert torch.all(first[:, 2] == 0.5)  # the bias is in every sample
    assert data_dim(world) == 3 and data_fingerprint(world) == {"kind": "TwoFeatureWorld"}
    with pytest.raises(ValueError, match="d=3 but the SAE has d=4"):
        training_batches(world, 4, config)
    with torch_threads(1):
        result = train_sae("relu", world, config, width=4, progress=False)
    assert result.n_samples == 64 * 40
