"""``SyntheticConfig``: everything that defines a ground-truth generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toysae._config import JsonMixin
from toysae._validation import (
    check_choice,
    check_float,
    check_indices,
    check_int,
    check_seed,
    to_numpy,
)

CORRELATIONS = ("none", "random", "low_rank", "matrix")
MAGNITUDES = ("uniform", "constant", "exponential", "folded_normal")
FIRING_LAWS = ("decay", "zipf", "explicit")


@dataclass(frozen=True)
class SyntheticConfig(JsonMixin):
    """Ground-truth features and how they fire. Defaults are the reference toy.

    Firing law (``firing``): ``"decay"`` (the default): feature ``i`` has base
    rate ``p_i ∝ decay**i``, scaled so that ``sum_i p_i = mean_active``;
    ``"zipf"``: ``w_i = (i + 1)**-zipf_exponent`` rescaled linearly into
    ``[p_min, p_max]`` (``p_0 = p_max``, ``p_{n-1} = p_min``; as SAELens's
    ``zipfian_firing_probabilities``); ``"explicit"``: ``p_i = rates[i]``.
    ``mean_active`` is used by ``"decay"`` only. Correlated firing is a per-sample Gaussian
    copula: ``g ~ N(0, C)``, feature ``i`` fires when ``g_i > Phi^-1(1 - p_i)``,
    so each feature's own firing event has rate exactly ``p_i``.

    Attributes
    ----------
    d, n_features : data dimension and number of true features.
    mean_active : expected number of firing events per sample (``sum_i p_i``).
    decay : firing-rate decay per feature index, in (0, 1].
    magnitude : law of the coefficient of an active feature: ``"uniform"``
        U[0, 1), ``"constant"`` 1, ``"exponential"`` Exp(1), ``"folded_normal"``
        |N(0, 1)|; all multiplied by ``magnitude_scale``.
    magnitude_mean, magnitude_spread : per-feature magnitudes, each a number or
        a ``(first, last)`` linear ramp across the feature indices. With
        ``magnitude_mean`` given, ``"folded_normal"`` draws
        ``|N(mu_i, sigma_i)|`` (``sigma`` from ``magnitude_spread``, default 1)
        and ``"constant"`` gives ``mu_i`` (no spread); both times
        ``magnitude_scale``. Other laws refuse them.
    correlation : ``"none"``, ``"random"`` (dense, full rank), ``"low_rank"``
        (rank ``correlation_rank``, sampled through its factor) or ``"matrix"``
        (``correlation_matrix``, a user correlation matrix).
    correlation_strength : for ``random``/``low_rank``,
        ``C = s * U U^T + (1 - s) * I`` with random unit rows ``U`` of length
        ``n_features`` (``random``) or ``correlation_rank`` (``low_rank``); in
        [0, 1). Off-diagonal correlations are about ``s / sqrt(len(U[i]))``:
        weak for ``random`` (as in the original replication code), stronger for
        a small rank.
    hierarchy : ``((parent, child), ...)``, a forest: a child fires only when
        its parent fires (its own event is then ANDed with the parent's firing).
    tree_roots, tree_branching, tree_depth : a generated hierarchy of
        ``tree_roots`` complete trees, each node with ``tree_branching``
        children, ``tree_depth`` levels counting the roots (depth 1: roots
        alone). It occupies the first ``tree_roots * (b**depth - 1) / (b - 1)``
        feature indices, breadth-first from index 0: roots ``0..R-1``, then
        their children level by level, the children of one node contiguous in
        the parents' order (child ``j`` of the ``k``-th node of a level is the
        ``k * b + j``-th node of the next). It joins ``hierarchy`` (see
        ``SyntheticConfig.hierarchy_pairs``). ``tree_roots=0``: no tree.
    exclusive_children : at most one child of a parent fires (of the children
        whose events fire, one is kept, uniformly); for ``hierarchy`` and the tree.
    compensate_rates : a child's own event gets rate ``min(p_child / m_parent, 1)``
        (``p`` the firing law's rate, ``m_parent`` the parent's marginal rate,
        its law rate unless itself capped; top-down), so that the child's
        marginal rate is the law's ``p_child``. Exact when the child's and its ancestors' events are
        independent (``correlation="none"``; approximately under a weak
        copula) and no sibling exclusion removes it. When ``p_child > p_parent``
        the rate is capped at 1: the child fires whenever its parent does and
        its marginal is its parent's, below the law. With ``exclusive_children``
        the rate is further multiplied by ``1 + (sum of its siblings' law rates) /
        m_parent`` (before the cap), one plus the siblings expected to compete with it,
        as SAELens's ``compensate_probabilities`` does, so that SAELens's worlds are
        built with the same rates. That factor over-corrects: a child firing with
        ``k`` siblings survives with probability ``1 / (1 + k)``, on average about
        ``1 - E[k] / 2``, so the marginals come out above the law by about half the
        competing siblings' expected number (and below it by as much without the
        factor).
        Without compensation a child's own event has the law's rate, so its
        marginal is the product of the rates along its path.
    scale_child_magnitude : a child's coefficient is multiplied by its parent's
        coefficient over the parent's mean magnitude (``magnitude_means``),
        applied top-down; the factor has mean 1, so each child's mean
        magnitude stays its own.
    exclusive_groups : ``((i, j, ...), ...)``: at most one feature of a group
        fires in a sample (one of the firing members is kept, uniformly).
    noise : standard deviation of isotropic Gaussian noise added to ``x``.
    min_active : samples with fewer active features are redrawn.
    orthogonal : orthonormal features (needs ``n_features <= d``).
    seed : every random draw of the generator derives from it.
    """

    d: int = 256
    n_features: int = 512
    mean_active: float = 5.0
    decay: float = 0.99
    magnitude: str = "uniform"
    magnitude_scale: float = 1.0
    correlation: str = "random"
    correlation_strength: float = 0.5
    correlation_rank: int = 25
    correlation_matrix: tuple | None = None
    firing: str = "decay"
    zipf_exponent: float = 1.0
    p_min: float = 5e-4
    p_max: float = 0.4
    rates: tuple | None = None
    hierarchy: tuple = ()
    tree_roots: int = 0
    tree_branching: int = 2
    tree_depth: int = 2
    exclusive_children: bool = False
    compensate_rates: bool = False
    scale_child_magnitude: bool = False
    magnitude_mean: float | tuple | None = None
    magnitude_spread: float | tuple | None = None
    exclusive_groups: tuple = ()
    noise: float = 0.0
    min_active: int = 0
    orthogonal: bool = False
    seed: int = 0

    def __post_init__(self):
        check_int(self.d, "d", minimum=1)
        n = check_int(self.n_features, "n_features", minimum=1)
        check_float(self.decay, "decay", minimum=0.0, maximum=1.0, min_inclusive=False)
        mean_active = check_float(self.mean_active, "mean_active", minimum=0.0,
                                  min_inclusive=False)
        self._check_firing_law()
        weights = self.decay ** np.arange(n, dtype=np.float64)
        reachable = weights.sum() / weights[0]
        if self.firing == "decay" and mean_active > reachable * (1 + 1e-12):
            raise ValueError(
                f"mean_active={mean_active} cannot be reached: with decay={self.decay} and "
                f"n_features={n} the most-frequent feature would need a rate above 1 "
                f"(largest reachable mean_active is {reachable:.6g})"
            )
        check_choice(self.magnitude, "magnitude", MAGNITUDES)
        self._check_magnitude_ramps()
        check_float(self.magnitude_scale, "magnitude_scale", minimum=0.0, min_inclusive=False)
        check_choice(self.correlation, "correlation", CORRELATIONS)
        check_float(self.correlation_strength, "correlation_strength", minimum=0.0,
                    maximum=1.0, max_inclusive=False)
        check_int(self.correlation_rank, "correlation_rank", minimum=1)
        check_float(self.noise, "noise", minimum=0.0)
        check_seed(self.seed)
        if not isinstance(self.orthogonal, bool):
            raise TypeError(f"orthogonal must be a bool, got {self.orthogonal!r}")
        if self.orthogonal and n > self.d:
            raise ValueError(f"orthogonal=True needs n_features <= d, got n_features={n} "
                             f"and d={self.d}")
        self._check_correlation_matrix()
        hierarchy = _index_pairs(self.hierarchy, n)
        object.__setattr__(self, "hierarchy", hierarchy)
        groups = _index_groups(self.exclusive_groups, n)
        object.__setattr__(self, "exclusive_groups", groups)
        self._check_tree()
        parents = _check_forest(self.hierarchy_pairs)
        for group in groups:
            members = set(group)
            for i in group:
                ancestor = parents.get(i)
                while ancestor is not None:
                    if ancestor in members:
                        raise ValueError(
                            f"exclusive_groups puts feature {i} and its ancestor {ancestor} "
                            f"in one group {group}: feature {i} could never fire")
                    ancestor = parents.get(ancestor)
        max_simultaneous = n - sum(len(g) - 1 for g in groups)
        check_int(self.min_active, "min_active", minimum=0, maximum=max_simultaneous)

    def _check_firing_law(self):
        check_choice(self.firing, "firing", FIRING_LAWS)
        check_float(self.zipf_exponent, "zipf_exponent", minimum=0.0, min_inclusive=False)
        p_min = check_float(self.p_min, "p_min", minimum=0.0, maximum=1.0, min_inclusive=False)
        p_max = check_float(self.p_max, "p_max", minimum=0.0, maximum=1.0, min_inclusive=False)
        if p_min > p_max:
            raise ValueError(f"p_min={p_min} must be <= p_max={p_max}")
        if self.firing != "explicit":
            if self.rates is not None:
                raise ValueError(f"rates is given but firing={self.firing!r}; "
                                 "use firing='explicit'")
            return
        if self.rates is None:
            raise ValueError("firing='explicit' needs rates")
        r = to_numpy(self.rates, "rates", ndim=1)
        if r.shape != (self.n_features,):
            raise ValueError(f"rates must have length n_features={self.n_features}, "
                             f"got {r.shape[0]}")
        bad = np.flatnonzero(~((r > 0) & (r <= 1)))
        if bad.size:
            raise ValueError(f"rates must lie in (0, 1]; rates[{bad[0]}] = {r[bad[0]]}")
        object.__setattr__(self, "rates", tuple(r.tolist()))

    def _check_magnitude_ramps(self):
        for name in ("magnitude_mean", "magnitude_spread"):
            value = getattr(self, name)
            if value is None:
                continue
            pair = (value, value) if np.isscalar(value) else tuple(value)
            if len(pair) != 2:
                raise ValueError(f"{name} must be a number or a (first, last) pair, got {value!r}")
            positive = name == "magnitude_spread"  # a spread of 0 is magnitude='constant'
            pair = tuple(check_float(v, name, minimum=0.0, min_inclusive=not positive)
                         for v in pair)
            object.__setattr__(self, name, pair)
        if self.magnitude_spread is not None and self.magnitude_mean is None:
            raise ValueError("magnitude_spread needs magnitude_mean")
        if self.magnitude_mean is not None:
            if self.magnitude not in ("folded_normal", "constant"):
                raise ValueError(f"magnitude_mean needs magnitude='folded_normal' or "
                                 f"'constant', got magnitude={self.magnitude!r}")
            if self.magnitude == "constant" and self.magnitude_spread is not None:
                raise ValueError("magnitude_spread needs magnitude='folded_normal'")
            if self.magnitude == "constant" and min(self.magnitude_mean) <= 0:
                raise ValueError("magnitude_mean must be > 0 with magnitude='constant'")

    def _check_tree(self):
        roots = check_int(self.tree_roots, "tree_roots", minimum=0)
        b = check_int(self.tree_branching, "tree_branching", minimum=1)
        depth = check_int(self.tree_depth, "tree_depth", minimum=1)
        for name in ("exclusive_children", "compensate_rates", "scale_child_magnitude"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        size, level = 0, roots
        for _ in range(depth if roots else 0):  # stops once over: a huge depth costs nothing
            size += level
            if size > self.n_features:
                raise ValueError(f"the tree (tree_roots={roots}, tree_branching={b}, "
                                 f"tree_depth={depth}) has more than n_features="
                                 f"{self.n_features} nodes ({size} in its first levels)")
            level *= b

    @property
    def tree_pairs(self) -> tuple:
        """``(parent, child)`` pairs of the generated tree, breadth-first from index 0."""
        roots, b = self.tree_roots, self.tree_branching
        pairs, start, width = [], 0, roots
        for _ in range(self.tree_depth - 1):
            nxt = start + width
            pairs += [(start + k, nxt + k * b + j) for k in range(width) for j in range(b)]
            start, width = nxt, width * b
        return tuple(pairs)

    @property
    def hierarchy_pairs(self) -> tuple:
        """Every ``(parent, child)`` pair: ``hierarchy`` then the tree's."""
        return self.hierarchy + self.tree_pairs if self.tree_roots else self.hierarchy

    def _check_correlation_matrix(self):
        if self.correlation != "matrix":
            if self.correlation_matrix is not None:
                raise ValueError("correlation_matrix is given but correlation="
                                 f"{self.correlation!r}; use correlation='matrix'")
            return
        if self.correlation_matrix is None:
            raise ValueError("correlation='matrix' needs correlation_matrix")
        C = to_numpy(self.correlation_matrix, "correlation_matrix", ndim=2)
        n = self.n_features
        if C.shape != (n, n):
            raise ValueError(f"correlation_matrix must have shape {(n, n)}, got {C.shape}")
        asym = np.abs(C - C.T).max()
        if asym > 1e-8:
            raise ValueError(f"correlation_matrix must be symmetric; max |C - C^T| = {asym:.3g}")
        diag = np.abs(np.diag(C) - 1).max()
        if diag > 1e-8:
            raise ValueError(f"correlation_matrix must have a unit diagonal; max |C_ii - 1| = "
                             f"{diag:.3g}")
        lowest = np.linalg.eigvalsh(C)[0]
        if lowest < -1e-8 * n:
            raise ValueError(f"correlation_matrix must be positive semi-definite; its smallest "
                             f"eigenvalue is {lowest:.3g}")
        object.__setattr__(self, "correlation_matrix", tuple(map(tuple, C.tolist())))

    @classmethod
    def synth_sae_bench(cls, reduction: int = 1, **overrides) -> SyntheticConfig:
        """The SynthSAEBench-16k world (Chanin & Garriga-Alonso 2026, arXiv 2602.14687) as
        SAELens's published configuration builds it (SAELens ``docs/synth_sae_bench.md``;
        decoderesearch/synth-sae-bench-experiments,
        ``experiments/create_synth_bench_16k_model.py``), in toysae's generator.

        16,384 features in d = 768; Zipf firing, exponent 0.5, rates in [5e-4, 0.4];
        128 root trees of branching 4 with three levels below the roots (SAELens's
        ``max_depth=3``; ``tree_depth=4`` here counts the roots' level): 10,880
        nodes on indices 0..10879, breadth-first, numbered as SAELens numbers them,
        so two features in three are in a tree; every parent's children mutually
        exclusive; rates compensated for the hierarchy and the exclusion (SAELens's
        ``compensate_probabilities``: the own rates are the same numbers); children
        scaled by their parent's coefficient over its mean; a rank-25 low-rank
        copula whose shared factor carries 0.25 of each feature's variance (SAELens's
        ``correlation_scale=0.1``: factor entries N(0, 0.1^2), 25 of them per row);
        folded-normal magnitudes with means ramping 5 -> 4 and spread 0.5.

        reduction : divides ``n_features``, ``d`` and ``tree_roots`` (a divisor of
            128), keeping the superposition ratio (21.3 features per dimension) and
            the tree's share of the features; ``reduction=8`` is a CPU-sized world
            of 2,048 features in d = 96. Overrides apply after it.

        Measured beside SAELens's own world at ``reduction=8`` (20,000 samples
        each; ``tests/interop/test_saelens_worlds.py``, docs/interop.md): true L0
        10.94 (SAELens 10.88), the firing rates by index band within 1.2%,
        parent/child co-firing 0.242 (0.242), the tree's share 66% in both, mean
        |cos| between features 0.0817 (0.0797); the own rates are SAELens's.
        At full size the true L0 is about 34.6 (SAELens: about 34.5). What toysae
        does not reproduce: the
        features are i.i.d. random unit vectors (SAELens further orthogonalises
        them by 100 Adam steps, which lowers the largest cosines and the mean
        |cos| by about 2% at ``reduction=8``) and there is no dictionary bias
        (SAELens adds one of norm 0.5); the copula's rows all carry the same
        share (SAELens's vary, chi-squared); each feature's spread is 0.5 (SAELens
        draws it from |N(0.5, 0.5)|), magnitudes are |N(mu, sigma)| (SAELens
        clips ``N(mu, sigma)`` at 0) and children are scaled by the parent's mean
        coefficient (SAELens: by ``mu``). For SAELens's world itself, bias and
        orthogonalised features included, use ``toysae.interop.SAELensWorld``.
        """
        reduction = check_int(reduction, "reduction", minimum=1)
        if 128 % reduction:
            raise ValueError(f"reduction must divide 128 (the number of trees), got {reduction}")
        params = dict(d=768 // reduction, n_features=16384 // reduction, firing="zipf",
                      zipf_exponent=0.5, p_min=5e-4, p_max=0.4, tree_roots=128 // reduction,
                      tree_branching=4, tree_depth=4, exclusive_children=True,
                      compensate_rates=True, scale_child_magnitude=True,
                      correlation="low_rank", correlation_rank=25, correlation_strength=0.25,
                      magnitude="folded_normal", magnitude_mean=(5.0, 4.0),
                      magnitude_spread=0.5)
        params.update(overrides)
        return cls(**params)

    @classmethod
    def synth_small(cls, **overrides) -> SyntheticConfig:
        """A CPU-sized world: 2,048 features in d = 256, :meth:`synth_sae_bench`'s
        Zipf law and magnitudes, 16 roots x branching 4 in three levels counting the
        roots (336 tree nodes) with exclusive children, neither compensated rates nor
        scaled children, a rank-25 copula of strength 0.1. True L0 is about 10.6
        (measured). It is the world of the experiments and tests calibrated on it,
        and keeps it; it is less superposed (8 features per dimension) and less
        hierarchical (16% of the features in a tree) than SynthSAEBench, whose
        proportions at CPU size are ``synth_sae_bench(reduction=8)``."""
        return cls.synth_sae_bench(**{"d": 256, "n_features": 2048, "tree_roots": 16,
                                      "tree_depth": 3, "compensate_rates": False,
                                      "scale_child_magnitude": False,
                                      "correlation_strength": 0.1, **overrides})

    @classmethod
    def toy_3d(cls, **overrides) -> SyntheticConfig:
        """The 3-D toy of the seed write-up: 6 features on the unit sphere in 3-D."""
        params = {"d": 3, "n_features": 6, "mean_active": 1.5}
        params.update(overrides)
        return cls(**params)


def _index_pairs(pairs, n: int) -> tuple:
    """``(parent, child)`` int pairs as a tuple of tuples; floats, bools and strings refused."""
    out = tuple(map(tuple, check_indices(pairs, "hierarchy", n, pairs=True).tolist()))
    for parent, child in out:
        if parent == child:
            raise ValueError(f"hierarchy pair ({parent}, {child}) makes a feature its own parent")
    return out


def _index_groups(groups, n: int) -> tuple:
    if isinstance(groups, (str, bytes, dict)) or not hasattr(groups, "__iter__"):
        raise TypeError(f"exclusive_groups must be a sequence of index sequences, "
                        f"got {groups!r}")
    out = tuple(tuple(check_indices(g, "exclusive_groups", n).tolist()) for g in groups)
    for g in out:
        if len(g) < 2 or len(set(g)) != len(g):
            raise ValueError(f"exclusive_groups needs groups of >= 2 distinct indices, got {g}")
    return out


def _check_forest(pairs) -> dict[int, int]:
    """Map child -> parent; ValueError for two parents or a cycle. Linear in the number
    of pairs, in any order, at any depth (each node's path upward is walked once)."""
    parents: dict[int, int] = {}
    for parent, child in pairs:
        if child in parents:
            raise ValueError(f"hierarchy gives feature {child} two parents "
                             f"({parents[child]} and {parent}); it must be a forest")
        parents[child] = parent
    done: set[int] = set()  # nodes whose path to a root is known to be acyclic
    for start in parents:
        path, node = set(), start
        while node is not None and node not in done:
            if node in path:
                raise ValueError(f"hierarchy has a cycle through feature {node}")
            path.add(node)
            node = parents.get(node)
        done |= path
    return parents
