"""What the studies of sites-and-recipes share: the panels' data without a host, the tied
vs untied pair they train, means and intervals over rows of scores (one row per seed), the
words of a comparison between two groups of rows, and the figures' colours."""

from __future__ import annotations

import numpy as np
import torch

from toysae._validation import shifted_seed
from toysae.data import SyntheticData
from toysae.sae import ReLUSAE, RunOptions, SingleSAE, TiedSAE, TrainConfig, train_members
from toysae.stats import Interval, compare, mean_interval, not_resolved

TIED_COLOR, UNTIED_COLOR = "tab:blue", "tab:orange"


def mean(rows, attr: str) -> float:
    """The mean of attribute ``attr`` over ``rows`` (scores)."""
    return float(np.mean([getattr(r, attr) for r in rows]))


def interval(rows, attr: str) -> Interval:
    """Attribute ``attr`` of ``rows`` (scores with a ``seed``) over the seeds: one value
    per seed (the mean of that seed's rows, when a group holds several recipes), their
    mean and 95% t interval."""
    seeds = sorted({r.seed for r in rows})
    return mean_interval([np.mean([getattr(r, attr) for r in rows if r.seed == s])
                          for s in seeds])


def versus(label: str, a: str, ia: Interval, b: str, ib: Interval, digits: int = 3,
           more: str = "higher") -> str:
    """``label`` of group ``a`` against group ``b``: "{the higher} has {more} {label} than
    {the lower}" where the intervals separate, "{label} not resolved at n seeds" where
    they do not, then both intervals (docs/design.md, "Seeds and intervals")."""
    both = f"({a} {ia.format(digits)} vs {b} {ib.format(digits)})"
    order = compare(ia, ib)
    if order == 0:
        return f"{label} {not_resolved(min(ia.n, ib.n))} {both}"
    high, low = (a, b) if order > 0 else (b, a)
    return f"{high} has {more} {label} than {low} {both}"


def stream(data: SyntheticData, F: np.ndarray, batch_size: int, seed: int, shift: float):
    """Endless training batches ``codes' @ F`` (codes' = active magnitudes + shift)."""
    per = max(1, 65536 // batch_size) * batch_size
    Ft = torch.from_numpy(F.astype(np.float32))
    k = 0
    while True:
        chunk_seed = shifted_seed(seed, 1_000_003 + k, 1_000_003)  # 1_000_003 (seed + 1) + k
        codes = torch.from_numpy(data.sample(per, seed=chunk_seed).codes)
        if shift:
            codes = torch.where(codes > 0, codes + shift, 0.0)
        yield from (codes @ Ft).split(batch_size)
        k += 1


def held(data: SyntheticData, F: np.ndarray, n: int, seed: int, shift: float):
    """``n`` held-out samples ``(X, codes')``: X (n, d) = codes' @ F, codes' (n, n_features)
    as in :func:`stream`, float64."""
    codes = data.sample(n, seed=seed).codes.astype(np.float64)
    if shift:
        codes = np.where(codes > 0, codes + shift, 0.0)
    return codes @ F, codes


def train_pair(X_stream, d: int, width: int, lam: float, cfg: TrainConfig, seed: int,
               bias: bool = False):
    """A tied and an untied SAE (same init, same batches, same bias setting)."""
    saes = [TiedSAE(d, width, decoder_bias=bias, seed=seed),
            ReLUSAE(d, width, decoder_bias=bias, seed=seed)]
    train_members([SingleSAE(s) for s in saes], [lam, lam], X_stream, cfg,
                  RunOptions(progress=False))
    return saes
