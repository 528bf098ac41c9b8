"""Sites and recipes: Cunningham et al. vs Anthropic, one difference at a time, on a host toy.

The seed (``anthropic-vs-cunningham-comparison``) sets the two first SAE papers
side by side: Cunningham et al. trained on the residual stream (linear,
signed) with tied weights, no pre-encoder bias and no resampling; Anthropic
trained on MLP activations ("just activated, so positive-skewed") with untied
weights, a pre-encoder bias and neuron resampling. Its comment thread asks
whether untied encoders are better because they are more expressive or worse
because they exploit nonlinearity, and suggests that an untied encoder can
*denoise* mutually exclusive, non-orthogonal features.

1. **Sites x recipes.** The residual toy host (:class:`toysae.models.ResidualToy`,
   trained once, then frozen) has the two sites: ``resid_pre`` (the generator's
   ``x``: exact ground truth, split into functional and nuisance features) and
   ``mlp_post`` (``ReLU(x W_in + b_in)``: scored against
   :func:`toysae.host_metrics.mlp_feature_proxy`, a PROXY, never a truth). At
   each site the full 2 x 2 x 2 grid {tied, untied} x {pre-encoder bias, none}
   x {resampling, none} is trained with the local reconstruction objective,
   ``n_seeds`` initialisations each (the untied, pre-biased members as one
   batched ensemble, the others beside it in the same engine run, so every
   SAE of a run sees the same batches). Scores: MMCS/MCC (truth or proxy),
   dead latents, L0, FVU, CE increase and KL with the SAE spliced in, and the
   site statistics that make MLP activations positive-skewed.
2. **Panel (a), exclusive pairs.** No host: features in pairs that never fire
   together, each pair at a set cosine ``c`` in its own plane; tied vs untied
   SAEs (no decoder bias in either, so tying is the only difference). A tied
   latent reads along its own atom, so its exclusive partner leaks ``c x`` into
   it; an untied encoder can subtract the partner. Measured: how often a latent
   fires while only its partner is on, the error of the matched codes, MMCS,
   and the amortisation gap to optimal codes for the SAE's own dictionary.
3. **Panel (b), a parent/child hierarchy** (``hierarchy-absorption``'s data):
   tied vs untied, and what the checkers say: ``check_sae`` (the dictionary with
   optimal codes) and ``hierarchy_certificate`` on the SAE's own codes count the
   nested pairs and the certified descent steps.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from toysae import host_metrics, metrics
from toysae._config import JsonMixin
from toysae._io import write_text
from toysae._threads import torch_threads
from toysae._validation import check_float, check_int, check_seed, check_tuple, shifted_seed
from toysae.data import SyntheticConfig, SyntheticData
from toysae.models import ResidualToy, ResidualToyConfig, SiteObjective
from toysae.sae import (
    ReLUSAE,
    ReLUSAEEnsemble,
    RunOptions,
    SingleSAE,
    TiedSAE,
    TrainConfig,
    train_members,
)
from toysae.theory import amortisation_gap, check_sae, hierarchy_certificate, sae_codes

NAME = "sites-and-recipes"
DESCRIPTION = ("Tied/untied x pre-encoder bias x resampling SAEs at resid_pre (exact truth) and "
               "mlp_post (proxy) of the residual toy; can an untied encoder denoise exclusive "
               "features; does tying change absorption.")

SITES = ("resid_pre", "mlp_post")
# (key, tied, decoder_bias, resample); the x-axis order of every figure
RECIPES = tuple((("tied" if t else "untied") + ("+bias" if b else "") + ("+resample" if r else ""),
                 t, b, r) for t in (True, False) for b in (False, True) for r in (False, True))
CUNNINGHAM, ANTHROPIC = "tied", "untied+bias+resample"
PARENT, CHILD = 0, 1


def _site_train() -> TrainConfig:
    return TrainConfig(n_samples=1_000_000, batch_size=256, lr=3e-3, resample_every=250,
                       log_every=200)


def _panel_train() -> TrainConfig:
    return TrainConfig(n_samples=1_000_000, batch_size=256, lr=3e-3, resample_every=250,
                       log_every=200)


def _hierarchy_train() -> TrainConfig:
    return TrainConfig(n_samples=400_000, batch_size=256, lr=3e-3, resample_every=250,
                       log_every=200)


def _exclusive_data() -> SyntheticConfig:
    return SyntheticConfig(d=8, n_features=8, mean_active=2.0, decay=1.0, correlation="none",
                           exclusive_groups=((0, 1), (2, 3), (4, 5), (6, 7)), orthogonal=True,
                           seed=0)


def _hierarchy_data() -> SyntheticConfig:
    return SyntheticConfig(d=8, n_features=4, mean_active=2.0, decay=1.0, correlation="none",
                           hierarchy=((PARENT, CHILD),), orthogonal=True, seed=0)


@dataclass(frozen=True)
class Config(JsonMixin):
    """Defaults: the full experiment. ``Config.quick()`` is the small version.

    host : the residual toy (trained once by ``run``).
    width : latents of every site SAE (both sites; the toy has 48 features).
    sparsity_coefs : the L1 coefficient at each site of ``SITES``; mlp_post's
        activations are ~1.6x larger in norm, so its coefficient is larger.
    site_train : the training run at the sites; its ``resample_every`` is the
        resampling arm (the other arm sets it to 0).
    n_seeds : SAE initialisations per recipe (seeds ``seed, seed + 1, ...``; the
        data stream is the same for all, ``site_train.seed``).
    n_eval : held-out host samples for every site score.
    exclusive_data : firing of panel (a): orthonormal features in exclusive pairs;
        feature ``j`` of each pair ``(i, j)`` is then turned toward ``i`` to cosine ``c``.
    exclusive_cosines : the cosines ``c`` of panel (a).
    exclusive_lam, exclusive_train : its L1 coefficient and training run.
    hierarchy_data, hierarchy_lam, hierarchy_train : panel (b); active
        magnitudes are moved to [0.5, 1.5) as in ``hierarchy-absorption``.
    panel_seeds, hierarchy_seeds : SAE initialisations (and data streams) per
        setting of panel (a) and for panel (b).
    n_check : held-out samples for the panel scores and the checkers.
    """

    host: ResidualToyConfig = field(default_factory=ResidualToyConfig)
    width: int = 96
    sparsity_coefs: tuple = (0.1, 0.15)
    site_train: TrainConfig = field(default_factory=_site_train)
    n_seeds: int = 3
    n_eval: int = 20_000
    exclusive_data: SyntheticConfig = field(default_factory=_exclusive_data)
    exclusive_cosines: tuple = (0.0, 0.3, 0.6, 0.8)
    exclusive_lam: float = 0.05
    exclusive_train: TrainConfig = field(default_factory=_panel_train)
    hierarchy_data: SyntheticConfig = field(default_factory=_hierarchy_data)
    hierarchy_lam: float = 0.1
    hierarchy_train: TrainConfig = field(default_factory=_hierarchy_train)
    panel_seeds: int = 3
    hierarchy_seeds: int = 5
    n_check: int = 4000
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.host, ResidualToyConfig):
            raise TypeError(f"host must be a ResidualToyConfig, got {type(self.host).__name__}")
        for name in ("site_train", "exclusive_train", "hierarchy_train"):
            if not isinstance(getattr(self, name), TrainConfig):
                raise TypeError(f"{name} must be a TrainConfig, got "
                                f"{type(getattr(self, name)).__name__}")
            if getattr(self, name).dead_latent_coef:
                raise ValueError(f"{name}.dead_latent_coef must be unset or 0: the batched "
                                 "ensemble has no dead-latent loss")
        if self.site_train.resample_every == 0:
            raise ValueError("site_train.resample_every must be > 0: it is the resampling arm "
                             "of the grid")
        for name in ("exclusive_data", "hierarchy_data"):
            if not isinstance(getattr(self, name), SyntheticConfig):
                raise TypeError(f"{name} must be a SyntheticConfig, got "
                                f"{type(getattr(self, name)).__name__}")
        check_int(self.width, "width", minimum=1)
        coefs = check_tuple(self.sparsity_coefs, "sparsity_coefs", check_float, minimum=0.0)
        if len(coefs) != len(SITES):
            raise ValueError(f"sparsity_coefs must have one entry per site {SITES}, got "
                             f"{self.sparsity_coefs}")
        ex = self.exclusive_data
        if not ex.orthogonal or not ex.exclusive_groups or ex.hierarchy:
            raise ValueError("exclusive_data must have orthogonal=True, exclusive_groups and no "
                             "hierarchy (the pairs are built from orthonormal features)")
        members = [i for g in ex.exclusive_groups for i in g]
        if any(len(g) != 2 for g in ex.exclusive_groups) or len(set(members)) != len(members):
            raise ValueError(f"exclusive_data.exclusive_groups must be disjoint pairs, got "
                             f"{ex.exclusive_groups}")
        check_tuple(self.exclusive_cosines, "exclusive_cosines", check_float, minimum=0.0,
                    maximum=1.0, max_inclusive=False)
        hi = self.hierarchy_data
        if (PARENT, CHILD) not in hi.hierarchy or not hi.orthogonal:
            raise ValueError(f"hierarchy_data must be orthogonal and contain ({PARENT}, {CHILD}) "
                             f"in its hierarchy, got orthogonal={hi.orthogonal}, hierarchy="
                             f"{hi.hierarchy}")
        for name in ("exclusive_lam", "hierarchy_lam"):
            check_float(getattr(self, name), name, minimum=0.0, min_inclusive=False)
        check_int(self.n_seeds, "n_seeds", minimum=1)
        check_int(self.panel_seeds, "panel_seeds", minimum=1)
        check_int(self.hierarchy_seeds, "hierarchy_seeds", minimum=1)
        check_int(self.n_eval, "n_eval", minimum=100)
        check_int(self.n_check, "n_check", minimum=100)
        check_seed(self.seed)

    @classmethod
    def quick(cls) -> Config:
        site = TrainConfig(n_samples=256 * 600, batch_size=256, lr=3e-3, resample_every=100,
                           dead_window=100, log_every=100)
        panel = TrainConfig(n_samples=256 * 1000, batch_size=256, lr=1e-2, log_every=200)
        return cls(site_train=site, n_seeds=1, n_eval=8000, exclusive_cosines=(0.0, 0.3, 0.6),
                   exclusive_train=panel,
                   hierarchy_train=panel.replace(n_samples=256 * 600), panel_seeds=1,
                   hierarchy_seeds=2, n_check=2000)


# -- results -------------------------------------------------------------------------
@dataclass(frozen=True)
class SiteStats(JsonMixin):
    """What the activations at a site look like (held-out samples, every entry).

    skew_median : median over coordinates of the per-coordinate skewness.
    frac_positive / frac_negative / frac_zero : shares of entries > 0, < 0, == 0.
    rms_norm : sqrt(mean ||a||^2). hist_edges, hist_counts : histogram of the entries.
    """

    site: str
    width: int
    skew_median: float
    frac_positive: float
    frac_negative: float
    frac_zero: float
    rms_norm: float
    hist_edges: np.ndarray
    hist_counts: np.ndarray


@dataclass(frozen=True)
class SiteScore(JsonMixin):
    """One SAE at one site. ``ground_truth`` is "exact" (resid_pre) or "PROXY" (mlp_post,
    :func:`toysae.host_metrics.mlp_feature_proxy`): mmcs, mcc, functional_* and
    nuisance_* are then against the proxy directions. dead: latents that never fire on
    the ``n_eval`` held-out samples; ce_increase, kl in nats."""

    site: str
    recipe: str
    tied: bool
    decoder_bias: bool
    resample: bool
    seed: int
    ground_truth: str
    mmcs: float
    mcc: float
    functional_mmcs: float
    nuisance_mmcs: float
    functional_recovered: float
    nuisance_recovered: float
    dead: int
    l0: float
    fvu: float
    ce_increase: float
    kl: float
    n_resampled: int


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


@dataclass(frozen=True)
class HierarchyScore(JsonMixin):
    """Panel (b): one SAE on the parent/child data.

    parent_atom / child_atom : the atoms with the largest cosine to the parent /
    child feature. child_atom_cos_parent : how much of the parent direction the
    child atom took in. parent_on_child : share of child samples where the parent
    atom fires (the SAE's own codes); child_on_parent_only : share of parent-only
    samples where the child atom fires. outcome : "absorption" (the child atom has
    cosine > 0.2 to the parent and fires on < 50% of parent-only samples: it
    fires with the child and carries part of the parent), "mixed" (cosine > 0.2
    but it fires on most parent-only samples too), "hierarchy kept" (child atom
    on the child, the parent atom fires on > 90% of child samples), "merged" (one
    atom is the best match of both) or "other". optimal_* : from
    ``check_sae`` (the SAE's dictionary with re-solved optimal codes); own_* : from
    ``hierarchy_certificate`` on the SAE's own codes. *_nested : nested pairs;
    *_certified : verified descent steps; *_drop : the largest verified drop.
    """

    tied: bool
    seed: int
    outcome: str
    mmcs: float
    parent_atom: int
    child_atom: int
    child_atom_cos_parent: float
    child_atom_cos_child: float
    parent_atom_cos_parent: float
    parent_on_child: float
    child_on_parent_only: float
    optimal_nested: int
    optimal_certified: int
    optimal_drop: float
    own_nested: int
    own_certified: int
    own_drop: float
    amortisation_gap: float
    passed: bool  # check_sae: the dictionary passes every optimality check
    explanation: str


@dataclass(frozen=True)
class Result(JsonMixin):
    config: Config
    host_fit: str
    sparsity_coefs: dict  # site -> L1 coefficient
    site_stats: tuple  # SiteStats per site
    site_scores: tuple  # SiteScore per site x recipe x seed
    effects: dict  # site -> factor -> metric -> mean(with) - mean(without)
    exclusive: tuple  # ExclusiveScore per cos x {tied, untied} x seed
    hierarchy: tuple  # HierarchyScore per {tied, untied} x seed
    findings: tuple  # what the toy shows, in words with the numbers
    wall_time: float


# -- part 1: sites x recipes ------------------------------------------------------------
def _site_stats(site: str, act: np.ndarray) -> SiteStats:
    a = np.asarray(act, dtype=np.float64)
    c = a - a.mean(axis=0)
    var = (c ** 2).mean(axis=0)
    live = var > 1e-12
    skew = (c[:, live] ** 3).mean(axis=0) / var[live] ** 1.5
    lo, hi = np.quantile(a, [0.0005, 0.9995])
    counts, edges = np.histogram(a, bins=60, range=(min(lo, 0.0), hi))
    return SiteStats(site, a.shape[1], float(np.median(skew)), float((a > 0).mean()),
                     float((a < 0).mean()), float((a == 0).mean()),
                     float(np.sqrt((a ** 2).sum(axis=1).mean())), edges, counts)


def _make(recipe_tied: bool, bias: bool, d: int, width: int, seed: int):
    if recipe_tied:
        return TiedSAE(d, width, decoder_bias=bias, seed=seed)
    return ReLUSAE(d, width, decoder_bias=bias, seed=seed)


def _train_site(host: ResidualToy, site: str, coef: float, config: Config):
    """Train the 8 recipes x n_seeds at ``site``: one engine run per resampling arm."""
    d, width = host.site_width(site), config.width
    seeds = [shifted_seed(config.seed, k) for k in range(config.n_seeds)]
    trained = {}
    for resample in (False, True):
        cfg = config.site_train if resample else config.site_train.replace(resample_every=0)
        # the untied, pre-biased recipe stacks into one batched ensemble; the others
        # (tied, or a fixed zero b_dec) are single stacks in the same run, same batches
        keys = [(True, False), (True, True), (False, False)]
        ens = ReLUSAEEnsemble.from_saes([ReLUSAE(d, width, seed=s) for s in seeds])
        singles = [(t, b, s, _make(t, b, d, width, s)) for t, b in keys for s in seeds]
        stacks = [ens] + [SingleSAE(sae) for *_, sae in singles]
        results = train_members(stacks, [coef] * (len(seeds) + len(singles)), host.data, cfg,
                                RunOptions(objective=SiteObjective(host, site, "local"),
                                           progress=False))
        for s, res in zip(seeds, results[:len(seeds)], strict=True):
            trained[(False, True, resample, s)] = res
        for (t, b, s, _), res in zip(singles, results[len(seeds):], strict=True):
            trained[(t, b, resample, s)] = res
    return trained


def _score_site(host, site, trained, held, proxy) -> list[SiteScore]:
    cfg = host.config
    truth = host.data.features if site == "resid_pre" else proxy
    kind = "exact" if site == "resid_pre" else "PROXY"
    out = []
    for key, tied, bias, resample in RECIPES:
        for (t, b, r, s), res in sorted(trained.items(), key=lambda kv: kv[0][3]):
            if (t, b, r) != (tied, bias, resample):
                continue
            sae = res.sae
            D = sae.dictionary.detach().numpy()
            split = host_metrics.ground_truth_split(truth, D, cfg.functional_features,
                                                    cfg.nuisance_features)
            m = host_metrics.splice_metrics(host, sae, site, held)
            out.append(SiteScore(
                site=site, recipe=key, tied=tied, decoder_bias=bias, resample=resample, seed=s,
                ground_truth=kind, mmcs=metrics.mmcs(truth, D), mcc=metrics.mcc(truth, D),
                functional_mmcs=split["functional_mmcs"], nuisance_mmcs=split["nuisance_mmcs"],
                functional_recovered=split["functional_recovered"],
                nuisance_recovered=split["nuisance_recovered"], dead=sae.width - m["alive"],
                l0=m["l0"], fvu=m["fvu"], ce_increase=m["ce_increase"], kl=m["kl"],
                n_resampled=res.n_resampled))
    return out


EFFECT_METRICS = ("mmcs", "mcc", "dead", "l0", "fvu", "ce_increase")


def _effects(scores) -> dict:
    """Per site and factor: mean over the rest of the grid of (factor on) - (factor off)."""
    out = {}
    for site in SITES:
        rows = [s for s in scores if s.site == site]
        out[site] = {}
        for factor, attr in (("untied", "tied"), ("pre-encoder bias", "decoder_bias"),
                             ("resampling", "resample")):
            on = [r for r in rows if getattr(r, attr) != (attr == "tied")]
            off = [r for r in rows if getattr(r, attr) == (attr == "tied")]
            out[site][factor] = {m: float(np.mean([getattr(r, m) for r in on])
                                          - np.mean([getattr(r, m) for r in off]))
                                 for m in EFFECT_METRICS}
    return out


# -- panels: data without a host ----------------------------------------------------------
def _stream(data: SyntheticData, F: np.ndarray, batch_size: int, seed: int, shift: float):
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


def _held(data: SyntheticData, F: np.ndarray, n: int, seed: int, shift: float):
    codes = data.sample(n, seed=seed).codes.astype(np.float64)
    if shift:
        codes = np.where(codes > 0, codes + shift, 0.0)
    return codes @ F, codes


def exclusive_features(data: SyntheticData, cos: float) -> np.ndarray:
    """The generator's orthonormal features with feature ``j`` of each exclusive pair
    ``(i, j)`` turned toward ``i``: ``f_j' = cos f_i + sqrt(1 - cos^2) f_j``."""
    F = data.features.astype(np.float64)
    for i, j in data.config.exclusive_groups:
        F[j] = cos * F[i] + np.sqrt(1.0 - cos * cos) * F[j]
    return F / np.linalg.norm(F, axis=1, keepdims=True)


def _train_pair(X_stream, d: int, width: int, lam: float, cfg: TrainConfig, seed: int,
                bias: bool = False):
    """A tied and an untied SAE (same init, same batches, same bias setting)."""
    saes = [TiedSAE(d, width, decoder_bias=bias, seed=seed),
            ReLUSAE(d, width, decoder_bias=bias, seed=seed)]
    train_members([SingleSAE(s) for s in saes], [lam, lam], X_stream, cfg,
                  RunOptions(progress=False))
    return saes


def _exclusive(config: Config) -> list[ExclusiveScore]:
    data = SyntheticData(config.exclusive_data)
    n_f, d = config.exclusive_data.n_features, config.exclusive_data.d
    partner = {}
    for i, j in config.exclusive_data.exclusive_groups:
        partner[i], partner[j] = j, i
    out = []
    for c in config.exclusive_cosines:
        F = exclusive_features(data, c)
        X, C = _held(data, F, config.n_check, shifted_seed(config.seed, 10_000_019), 0.0)
        for k in range(config.panel_seeds):
            seed = shifted_seed(config.seed, k)
            cfg = config.exclusive_train.replace(seed=seed)
            stream = _stream(data, F, cfg.batch_size, seed, 0.0)
            for sae in _train_pair(stream, d, n_f, config.exclusive_lam, cfg, seed):
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


def _hierarchy_score(sae, X, codes_true, F, lam, seed) -> HierarchyScore:
    D = sae.dictionary.detach().numpy().astype(np.float64)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    rep = check_sae(sae, X, lam, normalize=True)
    Z = sae_codes(sae, X)
    own = hierarchy_certificate(X, sae.dictionary.detach().numpy().astype(np.float64), Z, lam,
                                normalize=True)
    cos = D @ F.T
    p, c = int(np.argmax(cos[:, PARENT])), int(np.argmax(cos[:, CHILD]))
    on = codes_true > 0
    child, parent_only = on[:, CHILD], on[:, PARENT] & ~on[:, CHILD]
    fires = Z > 0
    p_on_c = float(fires[child, p].mean())
    c_on_p = float(fires[parent_only, c].mean())
    opt = rep.optimality.hierarchy
    if p == c:
        outcome = "merged"
        text = (f"one atom ({p}) carries parent and child (cos {cos[p, PARENT]:.2f}, "
                f"{cos[p, CHILD]:.2f})")
    elif cos[c, PARENT] > 0.2 and c_on_p < 0.5:
        outcome = "absorption"
        text = (f"child atom {c} absorbed the parent direction (cos {cos[c, PARENT]:.2f} to the "
                f"parent) and fires with the child only ({c_on_p:.0%} of parent-only samples); "
                f"the parent atom fires on {p_on_c:.0%} of child samples")
    elif cos[c, PARENT] > 0.2:
        outcome = "mixed"
        text = (f"child atom {c} reads parent + child (cos {cos[c, PARENT]:.2f} to the parent, "
                f"{cos[c, CHILD]:.2f} to the child) and fires on {c_on_p:.0%} of parent-only "
                f"samples, so it cannot absorb; the parent atom fires on {p_on_c:.0%} of child "
                f"samples")
    elif p_on_c > 0.9:
        outcome = "hierarchy kept"
        text = (f"child atom {c} stays on the child (cos {cos[c, CHILD]:.2f}), the parent atom "
                f"fires on {p_on_c:.0%} of child samples: nested supports")
    else:
        outcome = "other"
        text = (f"child atom {c} (cos {cos[c, CHILD]:.2f} to the child), the parent atom fires "
                f"on {p_on_c:.0%} of child samples")
    text += (f"; checker, optimal codes: {opt.n_nested} nested / {opt.n_certified} certified; "
             f"own codes: {own.n_nested} nested / {own.n_certified} certified")
    return HierarchyScore(
        tied=isinstance(sae, TiedSAE), seed=seed, outcome=outcome, mmcs=metrics.mmcs(F, D),
        parent_atom=p, child_atom=c, child_atom_cos_parent=float(cos[c, PARENT]),
        child_atom_cos_child=float(cos[c, CHILD]), parent_atom_cos_parent=float(cos[p, PARENT]),
        parent_on_child=p_on_c, child_on_parent_only=c_on_p, optimal_nested=opt.n_nested,
        optimal_certified=opt.n_certified, optimal_drop=float(opt.max_drop),
        own_nested=own.n_nested, own_certified=own.n_certified, own_drop=float(own.max_drop),
        amortisation_gap=float(rep.amortisation.relative_gap), passed=bool(rep.passed),
        explanation=text)


def _hierarchy(config: Config) -> list[HierarchyScore]:
    data = SyntheticData(config.hierarchy_data)
    F = data.features.astype(np.float64)
    d, n_f = config.hierarchy_data.d, config.hierarchy_data.n_features
    X, C = _held(data, F, config.n_check, shifted_seed(config.seed, 10_000_079), 0.5)
    out = []
    for k in range(config.hierarchy_seeds):
        seed = shifted_seed(config.seed, k)
        cfg = config.hierarchy_train.replace(seed=seed)
        stream = _stream(data, F, cfg.batch_size, seed, 0.5)
        for sae in _train_pair(stream, d, n_f, config.hierarchy_lam, cfg, seed):
            out.append(_hierarchy_score(sae, X, C, F, config.hierarchy_lam, seed))
    return out


# -- run ----------------------------------------------------------------------------
def run(config: Config) -> Result:
    with torch_threads(1):
        return _run(config)


def _run(config: Config) -> Result:
    start = time.perf_counter()
    host = ResidualToy(config.host)
    fit = host.fit()
    held = host.sample(config.n_eval, seed=shifted_seed(config.seed, 20_000_003))
    cache = host.forward_cache(held.inputs)
    stats = tuple(_site_stats(site, cache[site].numpy()) for site in SITES)
    proxy = host_metrics.mlp_feature_proxy(host)
    scores = []
    for site, coef in zip(SITES, config.sparsity_coefs, strict=True):
        trained = _train_site(host, site, coef, config)
        scores += _score_site(host, site, trained, held, proxy)
    exclusive = _exclusive(config)
    hierarchy = _hierarchy(config)
    result = Result(config=config, host_fit=fit.message,
                    sparsity_coefs=dict(zip(SITES, config.sparsity_coefs, strict=True)),
                    site_stats=stats, site_scores=tuple(scores), effects=_effects(scores),
                    exclusive=tuple(exclusive), hierarchy=tuple(hierarchy), findings=(),
                    wall_time=0.0)
    return dataclasses.replace(result, findings=tuple(_findings(result)),
                               wall_time=time.perf_counter() - start)


def _mean(rows, attr) -> float:
    return float(np.mean([getattr(r, attr) for r in rows]))


def _findings(r: Result) -> list[str]:
    out = []
    s = {st.site: st for st in r.site_stats}
    a, m = s["resid_pre"], s["mlp_post"]
    out.append(
        f"site statistics: per-coordinate skewness (median) {a.skew_median:.2f} at resid_pre vs "
        f"{m.skew_median:.2f} at mlp_post; entries > 0: {a.frac_positive:.0%} vs "
        f"{m.frac_positive:.0%}, < 0: {a.frac_negative:.0%} vs {m.frac_negative:.0%}, exactly 0: "
        f"{a.frac_zero:.0%} vs {m.frac_zero:.0%}. mlp_post is positive-skewed because most "
        f"entries are exactly zero with a long positive tail, not because most are positive")
    for site in SITES:
        rows = [x for x in r.site_scores if x.site == site]
        truth = "true features" if site == "resid_pre" else "the PROXY features"

        def rec(key, rows=rows):
            return [x for x in rows if x.recipe == key]
        best = max(RECIPES, key=lambda t: _mean(rec(t[0]), "mmcs"))[0]
        eff = r.effects[site]
        out.append(
            f"{site} (MMCS vs {truth}): Anthropic recipe ({ANTHROPIC}) MMCS "
            f"{_mean(rec(ANTHROPIC), 'mmcs'):.3f}, dead {_mean(rec(ANTHROPIC), 'dead'):.1f}, "
            f"L0 {_mean(rec(ANTHROPIC), 'l0'):.2f}, FVU {_mean(rec(ANTHROPIC), 'fvu'):.3f}, CE "
            f"increase {_mean(rec(ANTHROPIC), 'ce_increase'):.4f} nats; Cunningham recipe "
            f"({CUNNINGHAM}) MMCS {_mean(rec(CUNNINGHAM), 'mmcs'):.3f}, dead "
            f"{_mean(rec(CUNNINGHAM), 'dead'):.1f}, L0 {_mean(rec(CUNNINGHAM), 'l0'):.2f}, FVU "
            f"{_mean(rec(CUNNINGHAM), 'fvu'):.3f}, CE increase "
            f"{_mean(rec(CUNNINGHAM), 'ce_increase'):.4f}; best MMCS: {best}. Main effects "
            f"(mean over the rest of the grid): untying MMCS {eff['untied']['mmcs']:+.3f}, "
            f"dead {eff['untied']['dead']:+.1f}, FVU {eff['untied']['fvu']:+.3f}; pre-encoder "
            f"bias MMCS {eff['pre-encoder bias']['mmcs']:+.3f}, FVU "
            f"{eff['pre-encoder bias']['fvu']:+.3f}; resampling MMCS "
            f"{eff['resampling']['mmcs']:+.3f}, dead {eff['resampling']['dead']:+.1f} "
            f"(latents resampled per run: tied "
            f"{_mean([x for x in rows if x.tied and x.resample], 'n_resampled'):.1f}, untied "
            f"{_mean([x for x in rows if not x.tied and x.resample], 'n_resampled'):.1f})")
    for c in sorted({e.cos for e in r.exclusive}):
        t = [e for e in r.exclusive if e.cos == c and e.tied]
        u = [e for e in r.exclusive if e.cos == c and not e.tied]
        out.append(
            f"exclusive pairs at cosine {c:g}: a latent fires while only its partner is on in "
            f"{_mean(t, 'partner_false_positive'):.0%} of such samples (tied) vs "
            f"{_mean(u, 'partner_false_positive'):.0%} (untied); code error "
            f"{_mean(t, 'code_error'):.3f} vs {_mean(u, 'code_error'):.3f}; MMCS "
            f"{_mean(t, 'mmcs'):.3f} vs {_mean(u, 'mmcs'):.3f}; amortisation gap "
            f"{_mean(t, 'amortisation_gap'):.3g} vs {_mean(u, 'amortisation_gap'):.3g}")
    for tied in (True, False):
        h = [x for x in r.hierarchy if x.tied == tied]
        outcomes = {o: sum(x.outcome == o for x in h) for o in sorted({x.outcome for x in h})}
        out.append(
            f"hierarchy, {'tied' if tied else 'untied'} ({len(h)} seeds): outcomes {outcomes}; "
            f"child atom's cosine to the parent {_mean(h, 'child_atom_cos_parent'):.2f}, parent "
            f"atom fires on {_mean(h, 'parent_on_child'):.0%} of child samples, child atom on "
            f"{_mean(h, 'child_on_parent_only'):.0%} of parent-only samples; checker: nested "
            f"pairs with optimal codes {[x.optimal_nested for x in h]}, certified steps "
            f"{[x.optimal_certified for x in h]}; with the SAE's own codes nested "
            f"{[x.own_nested for x in h]}, certified {[x.own_certified for x in h]}")
    return out


# -- figures -------------------------------------------------------------------------------
TIED_COLOR, UNTIED_COLOR = "tab:blue", "tab:orange"


def _recipe_label(key: str) -> str:
    return key + (" (Cunningham)" if key == CUNNINGHAM else
                  " (Anthropic)" if key == ANTHROPIC else "")


def _bars(ax, rows, attr, title, ylabel, labels: bool, zoom: bool = False):
    x = np.arange(len(RECIPES))
    everything = []
    for k, (key, tied, bias, resample) in enumerate(RECIPES):
        vals = [getattr(r, attr) for r in rows if r.recipe == key]
        everything += vals
        ax.bar(k, np.mean(vals), color=TIED_COLOR if tied else UNTIED_COLOR,
               alpha=1.0 if resample else 0.55, hatch="//" if bias else None,
               edgecolor="0.2", linewidth=0.6)
        ax.plot([k] * len(vals), vals, "k.", ms=4)
    ax.set_xticks(x, [_recipe_label(k) for k, *_ in RECIPES] if labels else [], rotation=90,
                  fontsize=9)
    if zoom:  # scores near 1: start the axis just below the lowest value
        ax.set_ylim(max(0.0, min(everything) - 0.05), 1.0)
    ax.set_title(title)
    ax.set_ylabel(ylabel)


def _site_figure(result: Result):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    cfg = result.config
    fig, axes = plt.subplots(2, 6, figsize=(26, 11))
    stats = {s.site: s for s in result.site_stats}
    for row, site in enumerate(SITES):
        st = stats[site]
        ax = axes[row, 0]
        edges, counts = np.asarray(st.hist_edges), np.asarray(st.hist_counts)
        ax.bar(edges[:-1], counts / counts.sum(), width=np.diff(edges), align="edge",
               color="0.45")
        ax.set_yscale("log")
        ax.set_xlabel("activation entry (site units)")
        ax.set_ylabel("share of entries")
        ax.set_title(f"{site}: activation entries")
        ax.text(0.97, 0.97, f"median skew {st.skew_median:.2f}\n> 0: {st.frac_positive:.0%}\n"
                f"< 0: {st.frac_negative:.0%}\n= 0: {st.frac_zero:.0%}", transform=ax.transAxes,
                ha="right", va="top", fontsize=9)
        rows = [s for s in result.site_scores if s.site == site]
        truth = "true features" if site == "resid_pre" else "PROXY features (no exact truth)"
        last = row == len(SITES) - 1
        _bars(axes[row, 1], rows, "mmcs", f"{site}: MMCS vs\n{truth}", "mean max cosine", last,
              zoom=True)
        _bars(axes[row, 2], rows, "dead", f"{site}: dead latents (of {cfg.width},\nsilent on "
              f"{cfg.n_eval:,} held-out samples)", "latents", last)
        _bars(axes[row, 3], rows, "l0", f"{site}: L0", "active latents per sample", last)
        _bars(axes[row, 4], rows, "fvu", f"{site}: FVU at the site",
              "fraction of variance unexplained", last)
        _bars(axes[row, 5], rows, "ce_increase", f"{site}: CE increase, SAE spliced in",
              "nats per sample", last)
    handles = [Patch(color=TIED_COLOR, label="tied"), Patch(color=UNTIED_COLOR, label="untied"),
               Patch(facecolor="white", edgecolor="0.2", hatch="//",
                     label="pre-encoder (decoder) bias"),
               Patch(color="0.4", alpha=0.55, label="no resampling (pale)"),
               Patch(color="0.4", label="resampling (solid)")]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=11,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(
        f"Residual toy: 8 SAE recipes at resid_pre (exact truth) and mlp_post (scored against a "
        f"PROXY), width {cfg.width}, {cfg.site_train.n_samples:,} samples each; bars: mean of "
        f"{cfg.n_seeds} seed(s), dots: each seed; L1 coef {result.sparsity_coefs}", fontsize=12)
    fig.tight_layout(rect=(0, 0.035, 1, 0.97))
    return fig


def _panel_figure(result: Result):
    import matplotlib.pyplot as plt

    cfg = result.config
    fig, axes = plt.subplots(2, 4, figsize=(20, 9.5))
    cosines = sorted({e.cos for e in result.exclusive})
    panels_a = [("partner_false_positive", "(a) fires while only its partner is on",
                 "share of partner-only samples"),
                ("code_error", "(a) code error of the matched latents",
                 "||Z - C||_F / ||C||_F"),
                ("mmcs", "(a) MMCS vs the true features", "mean max cosine"),
                ("amortisation_gap", "(a) amortisation gap to optimal codes",
                 "relative objective gap")]
    for ax, (attr, title, ylabel) in zip(axes[0], panels_a, strict=True):
        for tied, color in ((True, TIED_COLOR), (False, UNTIED_COLOR)):
            rows = [e for e in result.exclusive if e.tied == tied]
            means = [_mean([e for e in rows if e.cos == c], attr) for c in cosines]
            ax.plot(cosines, means, "-o", color=color, label="tied" if tied else "untied")
            ax.plot([e.cos for e in rows], [getattr(e, attr) for e in rows], ".", color=color,
                    alpha=0.5)
        ax.set_xlabel("cosine between exclusive partners")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()
    seeds = sorted({h.seed for h in result.hierarchy})
    panels_b = [("child_atom_cos_parent", "(b) child atom's cosine to the parent direction",
                 "cosine"),
                ("parent_on_child", "(b) parent atom fires on child samples", "share"),
                ("child_on_parent_only", "(b) child atom fires on parent-only samples", "share")]
    width = 0.38
    x = np.arange(len(seeds))
    by = {tied: sorted((h for h in result.hierarchy if h.tied == tied), key=lambda h: h.seed)
          for tied in (True, False)}
    for ax, (attr, title, ylabel) in zip(axes[1, :3], panels_b, strict=True):
        for off, tied, color in ((-width / 2, True, TIED_COLOR), (width / 2, False, UNTIED_COLOR)):
            rows = by[tied]
            ax.bar(x + off, [getattr(h, attr) for h in rows], width, color=color,
                   label="tied" if tied else "untied")
            if attr == "child_atom_cos_parent":
                for k, h in enumerate(rows):
                    ax.text(x[k] + off, getattr(h, attr) + 0.02, h.outcome, ha="center",
                            va="bottom", fontsize=8, rotation=90)
        ax.set_xticks(x, [f"seed {s}" for s in seeds])
        ax.set_xlabel("SAE initialisation and data stream")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0.0, 1.45)
        ax.set_title(title)
        ax.legend(fontsize=9, loc="upper right")
    ax = axes[1, 3]
    w = 0.2
    for k, (tied, own, color, alpha, hatch) in enumerate((
            (True, False, TIED_COLOR, 1.0, None), (True, True, TIED_COLOR, 0.5, ".."),
            (False, False, UNTIED_COLOR, 1.0, None), (False, True, UNTIED_COLOR, 0.5, ".."))):
        rows = by[tied]
        vals = [h.own_nested if own else h.optimal_nested for h in rows]
        cert = [h.own_certified if own else h.optimal_certified for h in rows]
        pos = x + (k - 1.5) * w
        ax.bar(pos, vals, w, color=color, alpha=alpha, hatch=hatch, edgecolor="0.2",
               linewidth=0.5, label=f"{'tied' if tied else 'untied'}, "
               f"{'own' if own else 'optimal'} codes")
        for p, v, c in zip(pos, vals, cert, strict=True):
            ax.text(p, v + 0.03, f"{c}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [f"seed {s}" for s in seeds])
    ax.set_xlabel("SAE initialisation and data stream")
    ax.set_ylabel("nested pairs (number above: certified steps)")
    top = max([h.optimal_nested for h in result.hierarchy]
              + [h.own_nested for h in result.hierarchy] + [1])
    ax.set_ylim(0, top + 1.2)
    ax.set_title("(b) checker: nested pairs and certified\nhierarchy steps (descent exists)")
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    fig.suptitle(
        f"Tied vs untied without a host (no decoder bias in either). (a) "
        f"{cfg.exclusive_data.n_features} features in exclusive pairs at a set cosine, "
        f"L1 {cfg.exclusive_lam:g}; (b) parent/child hierarchy, L1 {cfg.hierarchy_lam:g}\n"
        f"checker: nested pairs with optimal codes for the SAE's dictionary (check_sae) and with "
        f"the SAE's own codes (hierarchy_certificate); {cfg.n_check:,} held-out samples",
        fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def save(result: Result, out_dir: Path) -> list[Path]:
    from toysae.plotting import save_figure, style

    style()
    out_dir = Path(out_dir)
    paths = [save_figure(_site_figure(result), out_dir / f"{NAME}.png"),
             save_figure(_panel_figure(result), out_dir / f"{NAME}-panels.png")]
    paths.append(write_text(out_dir / f"{NAME}.json", result.to_json()))
    return paths
