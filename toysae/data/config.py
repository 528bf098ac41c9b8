"""``SyntheticConfig``: everything that defines a ground-truth generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toysae._config import JsonMixin
from toysae._validation import check_choice, check_float, check_int, to_numpy

CORRELATIONS = ("none", "random", "low_rank", "matrix")
MAGNITUDES = ("uniform", "constant", "exponential", "folded_normal")


@dataclass(frozen=True)
class SyntheticConfig(JsonMixin):
    """Ground-truth features and how they fire. Defaults are the reference toy.

    Firing: feature ``i`` has base rate ``p_i ∝ decay**i``, scaled so that
    ``sum_i p_i = mean_active``. Correlated firing is a per-sample Gaussian
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
    hierarchy: tuple = ()
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
        weights = self.decay ** np.arange(n, dtype=np.float64)
        reachable = weights.sum() / weights[0]
        if mean_active > reachable * (1 + 1e-12):
            raise ValueError(
                f"mean_active={mean_active} cannot be reached: with decay={self.decay} and "
                f"n_features={n} the most-frequent feature would need a rate above 1 "
                f"(largest reachable mean_active is {reachable:.6g})"
            )
        check_choice(self.magnitude, "magnitude", MAGNITUDES)
        check_float(self.magnitude_scale, "magnitude_scale", minimum=0.0, min_inclusive=False)
        check_choice(self.correlation, "correlation", CORRELATIONS)
        check_float(self.correlation_strength, "correlation_strength", minimum=0.0,
                    maximum=1.0, max_inclusive=False)
        check_int(self.correlation_rank, "correlation_rank", minimum=1)
        check_float(self.noise, "noise", minimum=0.0)
        check_int(self.seed, "seed", minimum=0)
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
        parents = _check_forest(hierarchy)
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
    def toy_3d(cls, **overrides) -> SyntheticConfig:
        """The 3-D toy of the seed write-up: 6 features on the unit sphere in 3-D."""
        params = {"d": 3, "n_features": 6, "mean_active": 1.5}
        params.update(overrides)
        return cls(**params)


def _index_pairs(pairs, n: int) -> tuple:
    try:
        out = tuple((int(a), int(b)) for a, b in pairs)
    except (TypeError, ValueError) as err:
        raise TypeError(f"hierarchy must be a sequence of (parent, child) pairs, "
                        f"got {pairs!r}") from err
    for parent, child in out:
        for v in (parent, child):
            if not 0 <= v < n:
                raise ValueError(f"hierarchy index {v} is out of range for n_features={n}")
        if parent == child:
            raise ValueError(f"hierarchy pair ({parent}, {child}) makes a feature its own parent")
    return out


def _index_groups(groups, n: int) -> tuple:
    try:
        out = tuple(tuple(int(i) for i in g) for g in groups)
    except (TypeError, ValueError) as err:
        raise TypeError(f"exclusive_groups must be a sequence of index sequences, "
                        f"got {groups!r}") from err
    for g in out:
        if len(g) < 2 or len(set(g)) != len(g):
            raise ValueError(f"exclusive_groups needs groups of >= 2 distinct indices, got {g}")
        for i in g:
            if not 0 <= i < n:
                raise ValueError(f"exclusive_groups index {i} is out of range for n_features={n}")
    return out


def _check_forest(pairs) -> dict[int, int]:
    """Map child -> parent; ValueError for two parents or a cycle."""
    parents: dict[int, int] = {}
    for parent, child in pairs:
        if child in parents:
            raise ValueError(f"hierarchy gives feature {child} two parents "
                             f"({parents[child]} and {parent}); it must be a forest")
        parents[child] = parent
    for start in parents:
        seen = {start}
        node = parents.get(start)
        while node is not None:
            if node in seen:
                raise ValueError(f"hierarchy has a cycle through feature {node}")
            seen.add(node)
            node = parents.get(node)
    return parents
