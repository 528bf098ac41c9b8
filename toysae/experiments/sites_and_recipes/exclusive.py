"""Study 2 of sites-and-recipes, panel (a): can an untied encoder denoise exclusive
features?

No host: features in pairs that never fire together, each pair at a set cosine
``c`` in its own plane; tied vs untied SAEs (no decoder bias in either, so tying
is the only difference). A tied latent reads along its own atom, so its
exclusive partner leaks ``c x`` into it; an untied encoder can subtract the
partner. Measured: how often a latent fires while only its partner is on, the
error of the matched codes, MMCS, and the amortisation gap to optimal codes for
the SAE's own dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from toysae import metrics
from toysae._config import JsonMixin
from toysae._validation import shifted_seed
from toysae.data import SyntheticData
from toysae.experiments.sites_and_recipes.common import (
    TIED_COLOR,
    UNTIED_COLOR,
    held,
    interval,
    mean,
    stream,
    train_pair,
    versus,
)
from toysae.sae import TiedSAE
from toysae.stats import over_seeds
from toysae.theory import amortisation_gap, sae_codes

if TYPE_CHECKING:
    from toysae.experiments.sites_and_recipes import Config, Result


@dataclass(frozen=True)
class ExclusiveScore(JsonMixin):
    """Panel (a): one SAE on exclusive pairs at cosine ``cos``.

    Latents are matched one-to-one to the true features (Hungarian on the decoder
    cosines). partner_false_positive : over features, the share of samples where
    the feature's exclusive partner is on (so it is off) and its latent fires.
    false_positive : the share of samples where a feature is off and its latent
    fires; missed : on but silent. code_error : ||Z_matched - C||_F / ||C||_F against
    the true coefficients; code_corr : mean per-feature Pearson correlation.
    matched_cos_min : the worst matched atom's cosine. amortisation_gap : relative
    objective gap of the encoder's codes to optimal codes for its own dictionary
    (``toysae.theory.amortisation_gap``); support_jaccard : same supports, on average.
    """

    cos: float
    tied: bool
    seed: int
    mmcs: float
    matched_cos_min: float
    partner_false_positive: float
    false_positive: float
    missed: float
    code_error: float
    code_corr: float
    l0: float
    fvu: float
    amortisation_gap: float
    support_jaccard: float


def exclusive_features(data: SyntheticData, cos: float) -> np.ndarray:
    """The generator's orthonormal features with feature ``j`` of each exclusive pair
    ``(i, j)`` turned toward ``i``: ``f_j' = cos f_i + sqrt(1 - cos^2) f_j``."""
    F = data.features.astype(np.float64)
    for i, j in data.config.exclusive_groups:
        F[j] = cos * F[i] + np.sqrt(1.0 - cos * cos) * F[j]
    return F / np.linalg.norm(F, axis=1, keepdims=True)


def run_exclusive(config: Config) -> list[ExclusiveScore]:
    """Every cosine x seed x {tied, untied} of panel (a)."""
    data = SyntheticData(config.exclusive_data)
    n_f, d = config.exclusive_data.n_features, config.exclusive_data.d
    partner = {}
    for i, j in config.exclusive_data.exclusive_groups:
        partner[i], partner[j] = j, i
    out = []
    for c in config.exclusive_cosines:
        F = exclusive_features(data, c)
        X, C = held(data, F, config.n_check, shifted_seed(config.seed, 10_000_019), 0.0)
        for k in range(config.panel_seeds):
            seed = shifted_seed(config.seed, k)
            cfg = config.exclusive_train.replace(seed=seed)
            batches = stream(data, F, cfg.batch_size, seed, 0.0)
            for sae in train_pair(batches, d, n_f, config.exclusive_lam, cfg, seed):
                D = sae.dictionary.detach().numpy().astype(np.float64)
                Z = sae_codes(sae, X)
                with torch.no_grad():
                    X_hat = sae(torch.from_numpy(X.astype(np.float32))).x_hat.numpy()
                cos = metrics.cosine_matrix(F, D)
                rows, cols = linear_sum_assignment(cos, maximize=True)
                Zm = Z[:, cols[np.argsort(rows)]]
                fires, on = Zm > 0, C > 0
                pfp = [fires[on[:, partner[i]], i].mean() for i in partner
                       if on[:, partner[i]].any()]
                fp = [fires[~on[:, i], i].mean() for i in range(n_f) if (~on[:, i]).any()]
                miss = [(~fires[on[:, i], i]).mean() for i in range(n_f) if on[:, i].any()]
                corr = [np.corrcoef(Zm[:, i], C[:, i])[0, 1] if Zm[:, i].std() > 0 else 0.0
                        for i in range(n_f)]
                amort = amortisation_gap(sae, X, config.exclusive_lam)
                out.append(ExclusiveScore(
                    cos=float(c), tied=isinstance(sae, TiedSAE), seed=seed,
                    mmcs=metrics.mmcs(F, D), matched_cos_min=float(cos[rows, cols].min()),
                    partner_false_positive=float(np.mean(pfp)), false_positive=float(np.mean(fp)),
                    missed=float(np.mean(miss)),
                    code_error=float(np.linalg.norm(Zm - C) / np.linalg.norm(C)),
                    code_corr=float(np.mean(corr)), l0=metrics.l0(Z), fvu=metrics.fvu(X, X_hat),
                    amortisation_gap=float(amort.relative_gap),
                    support_jaccard=float(amort.support_jaccard)))
    return out


# What tied and untied are compared on at each cosine: (attribute, label, decimals)
COMPARED = (("partner_false_positive", "share of partner-only samples a latent fires on", 3),
            ("code_error", "code error", 3), ("mmcs", "MMCS", 3),
            ("amortisation_gap", "amortisation gap", 4))


def findings(r: Result) -> list[str]:
    """What panel (a) shows, per cosine: tied vs untied over the seeds, in words with the
    numbers and their intervals, a difference called only where they separate."""
    out = []
    for c in sorted({e.cos for e in r.exclusive}):
        t = [e for e in r.exclusive if e.cos == c and e.tied]
        u = [e for e in r.exclusive if e.cos == c and not e.tied]
        n = min(len(t), len(u))
        out.append(
            f"exclusive pairs at cosine {c:g}, tied vs untied ({over_seeds(n)}): " + "; ".join(
                versus(label, "tied", interval(t, attr), "untied", interval(u, attr), digits)
                for attr, label, digits in COMPARED))
    return out


def draw(axes, result: Result) -> None:
    """Panel (a) on four axes: each score against the partners' cosine."""
    cosines = sorted({e.cos for e in result.exclusive})
    panels_a = [("partner_false_positive", "(a) fires while only its partner is on",
                 "share of partner-only samples"),
                ("code_error", "(a) code error of the matched latents",
                 "||Z - C||_F / ||C||_F"),
                ("mmcs", "(a) MMCS vs the true features", "mean max cosine"),
                ("amortisation_gap", "(a) amortisation gap to optimal codes",
                 "relative objective gap")]
    for ax, (attr, title, ylabel) in zip(axes, panels_a, strict=True):
        for tied, color in ((True, TIED_COLOR), (False, UNTIED_COLOR)):
            rows = [e for e in result.exclusive if e.tied == tied]
            means = [mean([e for e in rows if e.cos == c], attr) for c in cosines]
            ax.plot(cosines, means, "-o", color=color, label="tied" if tied else "untied")
            for c in cosines:  # the 95% t interval of each mean (2 seeds or more)
                iv = interval([e for e in rows if e.cos == c], attr)
                if iv.resolved:
                    ax.errorbar(c, iv.mean, yerr=[[iv.mean - iv.low], [iv.high - iv.mean]],
                                color=color, capsize=3, linewidth=1)
            ax.plot([e.cos for e in rows], [getattr(e, attr) for e in rows], ".", color=color,
                    alpha=0.5)
        ax.set_xlabel("cosine between exclusive partners")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
