"""``toysae.experiments.sites_and_recipes.common``: the training stream and the held-out
samples are ``codes' @ F`` with the shift on active codes only, fixed by their seed, a new
chunk of samples after each ``65536 // batch_size`` batches; ``train_pair`` trains a tied and
an untied SAE from one initialisation on the same batches; ``mean`` averages a score,
``interval`` gives its t interval over the seeds, ``versus`` calls a difference only where
two intervals separate."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.experiments.sites_and_recipes.common import (
    held,
    interval,
    mean,
    stream,
    train_pair,
    versus,
)
from toysae.sae import ReLUSAE, RunOptions, SingleSAE, TiedSAE, TrainConfig, train_members
from toysae.stats import mean_interval

DATA = SyntheticData(SyntheticConfig(d=6, n_features=6, mean_active=2.0, correlation="none",
                                     orthogonal=True, seed=0))
IDENTITY = np.eye(6)  # X = codes': the codes read straight off the samples


def test_mean_averages_one_attribute_over_rows():
    rows = [SimpleNamespace(fvu=0.1, l0=2), SimpleNamespace(fvu=0.3, l0=5)]
    assert mean(rows, "fvu") == pytest.approx(0.2) and mean(rows, "l0") == 3.5
    assert isinstance(mean(rows, "l0"), float)


def test_interval_is_over_seeds_averaging_each_seeds_rows_first():
    rows = [SimpleNamespace(seed=0, fvu=0.1), SimpleNamespace(seed=0, fvu=0.3),
            SimpleNamespace(seed=2, fvu=0.5), SimpleNamespace(seed=1, fvu=0.4)]
    assert interval(rows, "fvu") == mean_interval([0.2, 0.4, 0.5])  # seed order
    one = interval(rows[:2], "fvu")
    assert one.n == 1 and not one.resolved and one.mean == pytest.approx(0.2)


def test_versus_calls_a_difference_only_where_the_intervals_separate():
    low, high = mean_interval([0.10, 0.11, 0.12]), mean_interval([0.50, 0.51, 0.52])
    wide = mean_interval([0.0, 0.3, 0.6])
    assert versus("FVU", "tied", high, "untied", low) == \
        f"tied has higher FVU than untied (tied {high.format(3)} vs untied {low.format(3)})"
    assert versus("dead latents", "tied", low, "untied", high, 1, "more").startswith(
        "untied has more dead latents than tied (tied 0.1 [")
    assert versus("MMCS", "tied", low, "untied", wide).startswith(
        "MMCS not resolved at 3 seeds (tied 0.110 [")
    one = mean_interval([0.9])
    assert versus("MMCS", "tied", one, "untied", mean_interval([0.1])) == \
        "MMCS not resolved at 1 seed (tied 0.900 (n=1) vs untied 0.100 (n=1))"


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_held_samples_are_the_shifted_codes_times_the_features(shift):
    X, codes = held(DATA, DATA.features, 300, seed=4, shift=shift)
    raw = DATA.sample(300, seed=4).codes.astype(np.float64)
    assert X.dtype == codes.dtype == np.float64 and X.shape == (300, 6)
    np.testing.assert_array_equal(codes, np.where(raw > 0, raw + shift, 0.0))
    np.testing.assert_allclose(X, codes @ DATA.features, rtol=1e-12)
    again, _ = held(DATA, DATA.features, 300, seed=4, shift=shift)
    np.testing.assert_array_equal(X, again)
    assert not np.array_equal(X, held(DATA, DATA.features, 300, seed=5, shift=shift)[0])


def test_the_stream_shifts_only_active_codes_and_is_fixed_by_its_seed():
    batches = list(itertools.islice(stream(DATA, IDENTITY, 64, seed=3, shift=0.5), 3))
    assert all(b.shape == (64, 6) and b.dtype == torch.float32 for b in batches)
    X = torch.cat(batches)
    active = X != 0
    assert active.any(dim=1).float().mean() > 0.5
    assert float(X[active].min()) >= 0.5  # every active code carries the shift
    plain = torch.cat(list(itertools.islice(stream(DATA, IDENTITY, 64, seed=3, shift=0.0), 3)))
    assert torch.equal(plain != 0, active)
    torch.testing.assert_close(X[active], plain[active] + 0.5)
    again = torch.cat(list(itertools.islice(stream(DATA, IDENTITY, 64, seed=3, shift=0.5), 3)))
    assert torch.equal(X, again)
    other = torch.cat(list(itertools.islice(stream(DATA, IDENTITY, 64, seed=4, shift=0.5), 3)))
    assert not torch.equal(X, other)


def test_the_stream_draws_a_new_chunk_after_65536_samples():
    """A chunk holds max(1, 65536 // batch_size) * batch_size samples: batches of 16,384 and
    32,768 cut the same first 65,536 samples, and the batches after them are a fresh draw;
    batches of 40,000 take a fresh chunk each."""
    small = list(itertools.islice(stream(DATA, IDENTITY, 16_384, seed=0, shift=0.0), 8))
    large = list(itertools.islice(stream(DATA, IDENTITY, 32_768, seed=0, shift=0.0), 4))
    assert torch.equal(torch.cat(small), torch.cat(large))
    assert not torch.equal(small[4], small[0]) and not torch.equal(large[2], large[0])
    first, second = itertools.islice(stream(DATA, IDENTITY, 40_000, seed=0, shift=0.0), 2)
    assert first.shape == second.shape == (40_000, 6)
    assert not torch.equal(first, second)


def test_train_pair_trains_tied_and_untied_from_one_init_on_the_same_batches():
    """Each of the pair equals its architecture trained alone from seed ``seed`` on the same
    stream; without a decoder bias the bias stays zero in both."""
    cfg = TrainConfig(n_samples=2048, batch_size=128, lr=1e-2, sparsity_coef=0.05, log_every=4)
    with torch_threads(1):
        pair = train_pair(stream(DATA, DATA.features, 128, 1, 0.0), 6, 8, 0.05, cfg, seed=2)
        alone = [TiedSAE(6, 8, decoder_bias=False, seed=2),
                 ReLUSAE(6, 8, decoder_bias=False, seed=2)]
        for sae in alone:
            train_members([SingleSAE(sae)], [0.05], stream(DATA, DATA.features, 128, 1, 0.0),
                          cfg, RunOptions(progress=False))
    assert [type(s) for s in pair] == [TiedSAE, ReLUSAE]
    assert not torch.equal(pair[1].W_dec, ReLUSAE(6, 8, seed=2).W_dec)  # it trained
    for got, want in zip(pair, alone, strict=True):
        assert not got.decoder_bias and not bool(got.decode(torch.zeros(1, 8)).any())
        for a, b in zip(got.parameters(), want.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
