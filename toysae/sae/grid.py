"""Penalty x width grids of ReLU+L1 SAEs, trained as one batched model.

``train_grid(data, l1_values, widths, config)`` trains the SAE of every
``(l1_values[i], widths[j])`` pair at once (see :mod:`toysae.sae.ensemble`) and
returns a :class:`GridResult`; ``train_grid_sequential`` trains the same SAEs
one after another with :func:`train_sae` and is the reference the batched grid
is checked and benchmarked against. Same data, same config, same seed: the
two give the same SAEs up to float rounding.

Seeds: member ``(i, j)`` is initialised as ``ReLUSAE(d, widths[j],
seed=member_seed(seed, widths[j]))``, so every penalty of a given width starts
from the same SAE (the penalty is the only difference along a column) and a
width's SAE does not depend on the rest of the grid. ``config.seed`` seeds the
data stream and resampling, as in ``train_sae``.

Layouts: ``"pad"`` stacks all members in one ensemble padded to the largest
width; ``"group"`` makes one unpadded ensemble per width and steps them
together; ``"auto"`` pads when the padding costs little (at most 25% more
latents than the grid really has) or when the padded matmuls are tiny
(``padded_extra * d * batch_size <= 2**22``, where per-call overhead, not
arithmetic, sets the step time), and groups otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from toysae._validation import check_choice, check_float, check_int, check_tuple
from toysae.sae.ensemble import (
    ReLUSAEEnsemble,
    _replace_l1,
    train_ensembles,
)
from toysae.sae.relu import ReLUSAE
from toysae.sae.trainer import TrainConfig, data_dim, derived_seed, train_sae

__all__ = ["GridMember", "GridResult", "member_seed", "train_grid", "train_grid_sequential"]

LAYOUTS = ("auto", "pad", "group")


def member_seed(seed: int, width: int) -> int:
    """Init seed of a grid's width-``width`` SAEs for grid seed ``seed``."""
    return derived_seed(check_int(seed, "seed", minimum=0), 4, check_int(width, "width", minimum=1))


@dataclass
class GridMember:
    """One SAE of a grid.

    index : (i, j), its row (penalty) and column (width) in the grid.
    final : the last logged row of ``history`` (loss parts on the last batch,
        ``l0``, ``dead``, and whatever ``eval_fn`` returned).
    wall_time : seconds; for a batched grid the grid's wall time divided by
        the number of members (amortised), for a sequential one its own.
    dictionary_history : (width, d) unit-row dictionaries at each logging step
        (only when recorded).
    """

    l1: float
    width: int
    index: tuple[int, int]
    seed: int
    sae: ReLUSAE
    history: dict[str, list[float]]
    n_resampled: int
    wall_time: float
    dictionary_history: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def final(self) -> dict[str, float]:
        return {k: v[-1] for k, v in self.history.items() if v}

    def to_dict(self) -> dict:
        return {"l1": self.l1, "width": self.width, "index": list(self.index),
                "seed": self.seed, "final": self.final, "n_resampled": self.n_resampled,
                "wall_time": self.wall_time, "history": self.history}


@dataclass
class GridResult:
    """Every SAE of a ``len(l1_values) x len(widths)`` grid; ``members`` in row-major order.

    ``result[i, j]`` is the member at ``(l1_values[i], widths[j])``;
    ``result.metric("l0")`` and ``result.array(fn)`` give (n_l1, n_widths) arrays.
    layout : "pad", "group" or "sequential" (how it was trained).
    wall_time : seconds for the whole grid.
    """

    l1_values: tuple[float, ...]
    widths: tuple[int, ...]
    config: TrainConfig
    members: list[GridMember]
    layout: str
    seed: int
    wall_time: float
    n_steps: int
    n_samples: int

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.l1_values), len(self.widths)

    def __getitem__(self, index: tuple[int, int]) -> GridMember:
        if not (isinstance(index, tuple) and len(index) == 2):
            raise TypeError(f"index must be a pair (i, j), got {index!r}")
        i = check_int(index[0], "i", minimum=0, maximum=self.shape[0] - 1)
        j = check_int(index[1], "j", minimum=0, maximum=self.shape[1] - 1)
        return self.members[i * self.shape[1] + j]

    def array(self, fn: Callable[[GridMember], float]) -> np.ndarray:
        """(n_l1, n_widths) float array of ``fn(member)``."""
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        return np.array([float(fn(m)) for m in self.members]).reshape(self.shape)

    def metric(self, name: str) -> np.ndarray:
        """(n_l1, n_widths) array of a logged quantity's final value, e.g. ``"l0"``."""
        known = set(self.members[0].final)
        if name not in known:
            raise ValueError(f"name must be one of {sorted(known)}, got {name!r}")
        return self.array(lambda m: m.final[name])

    def saes(self) -> list[list[ReLUSAE]]:
        """The trained SAEs as a nested list ``[i][j]``."""
        return [[self[i, j].sae for j in range(self.shape[1])] for i in range(self.shape[0])]

    def dictionaries(self) -> list[list[np.ndarray]]:
        """Unit-row dictionaries ``[i][j]``, (width_j, d) numpy arrays."""
        return [[sae.dictionary.numpy() for sae in row] for row in self.saes()]

    def to_dict(self) -> dict:
        return {"l1_values": list(self.l1_values), "widths": list(self.widths),
                "config": self.config.to_dict(), "layout": self.layout, "seed": self.seed,
                "wall_time": self.wall_time, "n_steps": self.n_steps,
                "n_samples": self.n_samples, "members": [m.to_dict() for m in self.members]}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **{"indent": 2, **kwargs})

    def __repr__(self) -> str:
        head = (f"GridResult({self.shape[0]} l1 x {self.shape[1]} widths, layout={self.layout}, "
                f"{self.n_steps} steps, {self.wall_time:.1f}s)")
        rows = [f"{'l1':>10} {'width':>6} {'loss':>10} {'recon':>10} {'l0':>7} {'dead':>5}"]
        for m in self.members:
            f = m.final
            rows.append(f"{m.l1:>10.4g} {m.width:>6d} {f['loss']:>10.4g} "
                        f"{f['reconstruction']:>10.4g} {f['l0']:>7.2f} {int(f['dead']):>5d}")
        return "\n".join([head, *rows])


def _check_grid(l1_values, widths, config, seed) -> tuple[tuple, tuple, int]:
    l1_values = check_tuple(l1_values, "l1_values", check_float, minimum=0.0)
    widths = check_tuple(widths, "widths", check_int, minimum=1)
    for name, values in (("l1_values", l1_values), ("widths", widths)):
        if len(set(values)) != len(values):
            raise ValueError(f"{name} must not repeat a value, got {values}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    return l1_values, widths, check_int(seed, "seed", minimum=0)


def _dim(data, d) -> int:
    return data_dim(data) if d is None else check_int(d, "d", minimum=1)


def plan_layout(widths: Sequence[int], d: int, batch_size: int, layout: str = "auto"
                ) -> tuple[str, list[list[int]]]:
    """(layout used, member indices of each ensemble) for members of the given ``widths``."""
    check_choice(layout, "layout", LAYOUTS)
    real, padded = sum(widths), len(widths) * max(widths)
    if layout == "auto":
        small = (padded - real) * d * batch_size <= 2 ** 22
        layout = "pad" if padded <= 1.25 * real or small else "group"
    if layout == "pad":
        return layout, [list(range(len(widths)))]
    return layout, [[k for k, w in enumerate(widths) if w == width]
                    for width in sorted(set(widths))]


def train_grid(data, l1_values: Sequence[float], widths: Sequence[int], config: TrainConfig, *,
               eval_fn: Callable[[ReLUSAE], dict[str, float]] | None = None,
               progress: bool = True, seed: int = 0, layout: str = "auto",
               record_dictionaries: bool = False, d: int | None = None) -> GridResult:
    """Train the ReLU+L1 SAE of every (penalty, width) pair as one batched model.

    data : as for :func:`train_sae` (``SyntheticData``, (n, d) array, or an
        iterable of batches, then ``d`` is required); ``config.l1`` is ignored,
        each member uses its own ``l1_values[i]``.
    eval_fn : ``eval_fn(sae) -> {name: float}`` per member at each logging step.
    layout : "auto", "pad" or "group" (module docstring).
    record_dictionaries : keep each member's dictionary at each logging step.
    """
    l1_values, widths, seed = _check_grid(l1_values, widths, config, seed)
    d = _dim(data, d)
    pairs = [(l1, w) for l1 in l1_values for w in widths]
    layout, groups = plan_layout([w for _, w in pairs], d, config.batch_size, layout)
    ensembles = [ReLUSAEEnsemble(d, [pairs[k][1] for k in g],
                                 seeds=[member_seed(seed, pairs[k][1]) for k in g])
                 for g in groups]
    order = [k for g in groups for k in g]  # member number in the ensembles -> grid index
    trained = train_ensembles(ensembles, [pairs[k][0] for k in order], data, config,
                              eval_fn=eval_fn, record_dictionaries=record_dictionaries,
                              progress=progress)
    members: list[GridMember | None] = [None] * len(pairs)
    for n, k in enumerate(order):
        l1, width = pairs[k]
        members[k] = GridMember(l1, width, divmod(k, len(widths)), member_seed(seed, width),
                                trained.member(n), trained.histories[n],
                                trained.n_resampled[n], trained.wall_time / len(pairs),
                                trained.dictionary_history[n])
    return GridResult(l1_values, widths, config, members, layout, seed, trained.wall_time,
                      trained.n_steps, trained.n_samples)


def train_grid_sequential(data, l1_values: Sequence[float], widths: Sequence[int],
                          config: TrainConfig, *,
                          eval_fn: Callable[[ReLUSAE], dict[str, float]] | None = None,
                          progress: bool = True, seed: int = 0,
                          d: int | None = None) -> GridResult:
    """The same grid as :func:`train_grid`, one ``train_sae`` call per SAE (the reference).

    ``data`` must be replayable (``SyntheticData``, an array, or a re-iterable
    such as a list), because every SAE reads the same stream from its start.
    """
    l1_values, widths, seed = _check_grid(l1_values, widths, config, seed)
    if isinstance(data, Iterator):
        raise ValueError("data is a one-shot iterator; train_grid_sequential replays the data "
                         "for every SAE, so pass SyntheticData, an array or a list of batches")
    d = _dim(data, d)
    members, total, n_steps, n_samples = [], 0.0, 0, 0
    for i, l1 in enumerate(l1_values):
        for j, width in enumerate(widths):
            sae = ReLUSAE(d, width, seed=member_seed(seed, width))
            res = train_sae(sae, data, _replace_l1(config, l1), eval_fn=eval_fn,
                            progress=progress)
            members.append(GridMember(l1, width, (i, j), sae.seed, sae, res.history,
                                      res.n_resampled, res.wall_time))
            total += res.wall_time
            n_steps, n_samples = res.n_steps, res.n_samples
    return GridResult(l1_values, widths, config, members, "sequential", seed, total, n_steps,
                      n_samples)
