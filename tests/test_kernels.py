"""``toysae._kernels``: ``flat_nonzero`` lists what ``torch.nonzero`` lists, for every dtype,
shape and density."""

import pytest
import torch

from toysae._kernels import flat_nonzero
from toysae._threads import torch_threads


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool, torch.int64])
def test_flat_nonzero_is_torchs_nonzero(dtype):
    t = torch.randn(37, 300, generator=_gen(13)) - 1.5
    t = t * ((t > 0) | (t < -3.0))  # positive and negative entries
    t[5] = float("nan")  # NaN is nonzero, as for torch
    t = t.to(dtype)[:, ::3]  # not contiguous
    expected = torch.nonzero(t.reshape(-1)).squeeze(1)
    assert 0 < expected.numel() < t.numel() // 2
    assert torch.equal(flat_nonzero(t), expected)
    assert flat_nonzero(t[:0]).numel() == 0


@pytest.mark.parametrize("shape,density", [
    ((0,), 0.5), ((7,), 0.5), ((3, 5), 0.3), ((64,), 1.0),
    ((201, 41), 0.004), ((40, 24), 0.0), ((400, 40), 0.002)])
def test_flat_nonzero_is_nonzero(shape, density):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(1)) < density
    assert torch.equal(flat_nonzero(mask), mask.reshape(-1).nonzero().squeeze(1))
