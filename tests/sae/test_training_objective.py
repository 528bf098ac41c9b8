"""``toysae.sae.training_objective``: a custom ``Objective`` trains through the fused ReLU
path and is refused when it is not one."""

import numpy as np
import pytest
import torch

from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae import Objective, TrainConfig, train_sae

D = 12
TINY = SyntheticConfig(d=D, n_features=8, mean_active=2.0, decay=0.9, correlation="none",
                       orthogonal=True, seed=0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors: a second thread only adds fork/join waits on a busy machine.
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def toy():
    return SyntheticData(TINY)


# -- the engine: objectives, blow-up, threads ---------------------------------------
class _FirstHalf(Objective):
    """Reconstruct only the first half of the input's coordinates (a non-local objective)."""

    def __call__(self, batch, sae_input, output):
        half = sae_input.shape[1] // 2
        err = (output.x_hat[..., :half] - sae_input[:, :half]).square()
        return {"first_half": 0.5 * err.sum(dim=(1, 2)) / sae_input.shape[0]}


def test_a_custom_objective_trains_through_the_fused_relu_path(toy, monkeypatch):
    from toysae.sae._fused import FusedForward

    calls = []
    backward = FusedForward.backward

    def counting_backward(ctx, *grads):
        calls.append(1)
        return backward(ctx, *grads)

    monkeypatch.setattr(FusedForward, "backward", staticmethod(counting_backward))
    cfg = TrainConfig(n_samples=64 * 200, batch_size=64, lr=1e-2, sparsity_coef=0.01,
                      log_every=50)
    res = train_sae("relu", toy, cfg, width=16, objective=_FirstHalf(), progress=False)
    assert len(calls) == res.n_iter == 200  # every step took the hand-written backward
    assert "first_half" in res.history and "reconstruction" not in res.history
    first = res.history["first_half"]
    assert first[-1] < 0.5 * first[0]
    np.testing.assert_allclose(res.history["loss"], first + res.history["sparsity"]
                               + res.history["auxiliary"], rtol=1e-5)
    X = torch.from_numpy(toy.sample(2000, seed=11).x)
    err = (res.sae(X).x_hat - X).square().mean(0)
    assert err[:D // 2].mean() < err[D // 2:].mean()  # it learned what it was asked
    with pytest.raises(TypeError, match="objective"):
        train_sae("relu", toy, cfg, width=16, objective=lambda *a: {}, progress=False)
