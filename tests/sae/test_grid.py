"""``toysae.sae.grid``: batched SAE grids: the same SAEs as sequential training, seeded,
members independent, results indexed, the layout plan, bad input."""

import json

import numpy as np
import pytest
import torch

from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae.config import TrainConfig
from toysae.sae.ensemble import ReLUSAEEnsemble, train_ensembles
from toysae.sae.grid import GridResult, member_seed, plan_layout, train_grid, train_grid_sequential
from toysae.sae.relu import ReLUSAE

TOY = SyntheticData(SyntheticConfig.toy_3d())
# Short runs with frequent resampling so that the resampling path is compared too.
CFG = TrainConfig(n_samples=128 * 120, batch_size=128, lr=1e-2, sparsity_warmup=0.1,
                  dead_window=10, resample_every=30, log_every=40)


def _params(sae):
    return {k: v.detach() for k, v in sae.state_dict().items()}


def _assert_same_saes(a: GridResult, b: GridResult, atol: float):
    assert a.shape == b.shape
    for k, (ma, mb) in enumerate(zip(a.members, b.members, strict=True)):
        assert (ma.sparsity_coef, ma.sae.width, a.index(k)) == (mb.sparsity_coef, mb.sae.width,
                                                                b.index(k))
        pa, pb = _params(ma.sae), _params(mb.sae)
        for name in pa:
            torch.testing.assert_close(pa[name], pb[name], atol=atol, rtol=0, msg=name)
        assert ma.n_resampled == mb.n_resampled
        np.testing.assert_allclose(ma.history["loss"], mb.history["loss"], rtol=1e-4)


@pytest.mark.parametrize("layout", ["pad", "group"])
def test_batched_grid_matches_sequential(layout):
    coefs, widths = [0.003, 0.1, 0.5], [3, 8]
    batched = train_grid(TOY, coefs, widths, CFG, progress=False, layout=layout)
    sequential = train_grid_sequential(TOY, coefs, widths, CFG, progress=False)
    assert batched.layout == layout and sequential.layout == "sequential"
    # the comparison covers resampling: some member must have resampled
    assert sum(m.n_resampled for m in sequential.members) > 0
    _assert_same_saes(batched, sequential, atol=1e-4)


def test_batched_grid_is_reproducible_and_seeded():
    a = train_grid(TOY, [0.05], [4, 6], CFG, progress=False, seed=3)
    b = train_grid(TOY, [0.05], [4, 6], CFG, progress=False, seed=3)
    c = train_grid(TOY, [0.05], [4, 6], CFG, progress=False, seed=4)
    for ma, mb in zip(a.members, b.members, strict=True):
        for name, value in _params(ma.sae).items():
            assert torch.equal(value, _params(mb.sae)[name])
    assert a[0, 0].sae.seed == member_seed(3, 4) != c[0, 0].sae.seed
    assert not torch.equal(a[0, 0].sae.W_dec, c[0, 0].sae.W_dec)


def test_dead_member_does_not_affect_others():
    # a member with an enormous penalty goes silent; its neighbour trains as if alone
    grid = train_grid(TOY, [50.0, 0.05], [6], CFG, progress=False, layout="pad")
    assert grid[0, 0].final["l0"] == 0
    alone = train_grid(TOY, [0.05], [6], CFG, progress=False)
    for name, value in _params(alone[0, 0].sae).items():
        torch.testing.assert_close(_params(grid[1, 0].sae)[name], value, atol=1e-5, rtol=0)


def test_decoder_rows_unit_norm_and_members_are_plain_relu_saes():
    grid = train_grid(TOY, [0.01, 0.2], [3, 5, 7], CFG, progress=False, layout="pad")
    for m in grid.members:
        assert type(m.sae) is ReLUSAE and m.sae.width in (3, 5, 7) and m.sae.d == 3
        norms = m.sae.W_dec.detach().norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)


def test_results_indexed_correctly():
    grid = train_grid(TOY, [1e-4, 1.0], [4, 8], CFG, progress=False)
    assert [(m.sparsity_coef, m.sae.width, grid.index(k)) for k, m in enumerate(grid.members)] \
        == [(1e-4, 4, (0, 0)), (1e-4, 8, (0, 1)), (1.0, 4, (1, 0)), (1.0, 8, (1, 1))]
    assert grid[1, 0] is grid.members[2] and grid.success
    l0 = grid.metric("l0")
    assert l0.shape == (2, 2)
    assert (l0[1] < 0.5 * l0[0]).all()  # a huge penalty ends much sparser, column by column
    x = TOY.sample(2000, seed=5).x
    measured = grid.array(lambda m: (m.sae.encode(x) > 0).float().sum(1).mean().item())
    assert (measured[1] < measured[0]).all()
    assert grid.array(lambda m: m.sae.width).tolist() == [[4, 8], [4, 8]]
    data = json.loads(grid.to_json())
    assert data["members"][2]["sparsity_coef"] == 1.0 and data["members"][2]["index"] == [1, 0]
    assert "?" not in repr(grid) and "layout=" in repr(grid)
    with pytest.raises(ValueError, match="name"):
        grid.metric("no-such-metric")


def test_eval_fn_and_recorded_dictionaries():
    seen = []

    def eval_fn(sae):
        seen.append(sae.width)
        return {"norm": float(sae.dictionary.norm(dim=1).mean())}

    grid = train_grid(TOY, [0.05], [3, 5], CFG, progress=False, eval_fn=eval_fn,
                      record_dictionaries=True)
    n_logs = len(grid[0, 0].history["step"])
    assert sorted(seen) == [3] * n_logs + [5] * n_logs
    np.testing.assert_allclose(grid.metric("norm"), 1.0, atol=1e-5)
    frames = grid[0, 1].dictionary_history
    assert len(frames) == n_logs and frames[-1].shape == (5, 3)
    np.testing.assert_allclose(frames[-1], grid[0, 1].sae.dictionary.numpy(), atol=1e-6)


def test_plan_layout():
    assert plan_layout([6, 12, 24] * 4, 3, 256) == ("pad", [list(range(12))])
    layout, groups = plan_layout([512, 1024, 2048] * 3, 256, 1024)
    assert layout == "group" and groups == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert plan_layout([512] * 3, 256, 1024)[0] == "pad"


@pytest.mark.parametrize("kwargs, error, match", [
    ({"sparsity_coefs": []}, ValueError, "sparsity_coefs must not be empty"),
    ({"sparsity_coefs": [0.1, -0.1]}, ValueError, r"sparsity_coefs\[1\] must be >= 0"),
    ({"sparsity_coefs": [0.1, 0.1]}, ValueError, "sparsity_coefs must not repeat"),
    ({"widths": []}, ValueError, "widths must not be empty"),
    ({"widths": [4, 0]}, ValueError, r"widths\[1\] must be >= 1"),
    ({"widths": [2.5]}, TypeError, r"widths\[0\] must be an int"),
    ({"d": 5}, ValueError, "data has d=3 but the SAE has d=5"),
    ({"layout": "diagonal"}, ValueError, "layout must be one of"),
    ({"config": {"lr": 1}}, TypeError, "config must be a TrainConfig"),
    ({"seed": -1}, ValueError, "seed must be >= 0"),
])
def test_bad_input(kwargs, error, match):
    args = {"data": TOY, "sparsity_coefs": [0.1], "widths": [4], "config": CFG, **kwargs}
    with pytest.raises(error, match=match):
        train_grid(**args, progress=False)


def test_bad_data():
    with pytest.raises(ValueError, match=r"data has 4 columns but the SAE has d=3"):
        train_grid(np.zeros((100, 4), np.float32), [0.1], [4], CFG, progress=False, d=3)
    batches = [np.ones((8, 3), np.float32), np.ones((8, 4), np.float32)]
    with pytest.raises(ValueError, match=r"data batch 1 must have shape \(n, 3\)"):
        train_grid(batches, [0.1], [4], CFG, progress=False, d=3)
    with pytest.raises(ValueError, match="one-shot iterator"):
        train_grid_sequential(iter(batches), [0.1], [4], CFG, progress=False, d=3)
    with pytest.raises(ValueError, match="dead_latent_coef"):
        train_grid(TOY, [0.1], [4], TrainConfig(dead_latent_coef=1.0), progress=False)
    ens = ReLUSAEEnsemble(3, [4])
    with pytest.raises(ValueError, match=r"x must have shape \(n, 3\)"):
        ens(np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="one entry per member"):
        train_ensembles(ens, [0.1, 0.2], TOY, CFG, progress=False)
