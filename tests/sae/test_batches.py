"""``toysae.sae.batches``: the data stream of a run restarts at a given step with the same
batches, for synthetic, array and batch-list data."""

import numpy as np
import pytest
import torch

from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae import TrainConfig
from toysae.sae.batches import training_batches

D = 12
TINY = SyntheticConfig(d=D, n_features=8, mean_active=2.0, decay=0.9, correlation="none",
                       orthogonal=True, seed=0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def toy():
    return SyntheticData(TINY)


def test_the_data_stream_restarts_at_the_step(toy):
    cases = [  # synthetic chunks are 65536 // 8192 = 8 steps: start 11 is inside chunk 1
        (toy, TrainConfig(n_samples=8192 * 20, batch_size=8192), 11),
        (toy.sample(50, seed=1).x, TrainConfig(n_samples=16 * 30, batch_size=16), 9),
        ([np.full((4, D), k, dtype=np.float32) for k in range(10)],
         TrainConfig(n_samples=40, batch_size=4), 6),
    ]
    for data, config, start in cases:
        full = list(training_batches(data, D, config)[0])
        tail = list(training_batches(data, D, config, start=start)[0])
        assert len(tail) == len(full) - start
        assert all(torch.equal(a, b) for a, b in zip(full[start:], tail, strict=True))
    short = training_batches([np.zeros((4, D), np.float32)] * 3, D,
                             TrainConfig(n_samples=40, batch_size=4), start=5)[0]
    with pytest.raises(ValueError, match="data ended after 3 batches"):
        next(short)
