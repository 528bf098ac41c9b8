"""``toysae.sae.batchtopk``: BatchTopK keeps k times the batch in training and learns its
inference threshold; its momentum is checked."""

import pytest
import torch

from toysae._threads import torch_threads
from toysae.sae import BatchTopKSAE

D, WIDTH = 10, 24


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors: a second thread only adds fork/join waits on a busy machine.
    with torch_threads(1):
        yield


def _x(n=64, seed=0):
    return torch.rand(n, D, generator=torch.Generator().manual_seed(seed))


def test_batchtopk_keeps_k_times_batch_and_learns_a_threshold():
    sae = BatchTopKSAE(D, WIDTH, k=4, momentum=0.5, seed=2)
    with torch.no_grad():
        sae.b_enc.fill_(5.0)
    sae.train()
    x = _x(30)
    out = sae(x)
    assert int((out.codes > 0).sum()) == 4 * 30
    smallest = out.codes[out.codes > 0].min()
    torch.testing.assert_close(sae.threshold, smallest)  # the first batch sets it
    out2 = sae(_x(30, seed=9))
    smallest2 = out2.codes[out2.codes > 0].min()
    torch.testing.assert_close(sae.threshold, smallest + 0.5 * (smallest2 - smallest))
    sae.eval()
    x3 = _x(40, seed=11)
    pre = sae.encode_pre(x3)
    codes = sae.encode(x3)
    assert torch.equal(codes > 0, pre > sae.threshold)
    torch.testing.assert_close(codes[codes > 0], pre[codes > 0])


def test_bad_momentum_is_refused():
    with pytest.raises(ValueError, match="momentum"):
        BatchTopKSAE(D, WIDTH, momentum=0.0)
