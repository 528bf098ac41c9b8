"""Penalty x width grids of ReLU+L1 SAEs: a layout planner plus the training engine.

``train_grid(data, sparsity_coefs, widths, config)`` trains the SAE of every
``(sparsity_coefs[i], widths[j])`` pair at once (batched ensembles, see
:mod:`toysae.sae.ensemble`, trained by :func:`toysae.sae.engine.train_members`)
and returns a :class:`GridResult` of one :class:`TrainResult` per member;
``train_grid_sequential`` trains the same SAEs one after another with
:func:`train_sae` and is the reference the batched grid is checked and
benchmarked against. Same data, same config, same seed: the two give the same
SAEs up to float rounding.

Seeds: member ``(i, j)`` is initialised as ``ReLUSAE(d, widths[j],
seed=member_seed(seed, widths[j]))``, so every penalty of a given width starts
from the same SAE (the penalty is the only difference along a column) and a
width's SAE does not depend on the rest of the grid. ``config.seed`` seeds the
data stream and resampling, as in ``train_sae``.

Layouts: ``"pad"`` stacks all members in one ensemble padded to the largest
width; ``"group"`` makes one unpadded ensemble per width and steps them
together; ``"auto"`` pads when the padding costs little (at most
``toysae._tuning.GRID_PAD_FRACTION`` more latents than the grid really has)
or when the padded matmuls are tiny (``padded_extra * d * batch_size <=
GRID_PAD_WORK``, where per-call overhead, not arithmetic, sets the step time),
and groups otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from toysae import _tuning
from toysae._result import Result
from toysae._validation import check_choice, check_float, check_int, check_seed, check_tuple
from toysae.sae.batches import data_dim, derived_seed
from toysae.sae.config import TrainConfig
from toysae.sae.engine import RunOptions, TrainResult, train_sae
from toysae.sae.ensemble import ReLUSAEEnsemble, train_ensembles
from toysae.sae.relu import ReLUSAE

__all__ = ["GridResult", "member_seed", "train_grid", "train_grid_sequential"]

LAYOUTS = ("auto", "pad", "group")


def member_seed(seed: int, width: int) -> int:
    """Init seed of a grid's width-``width`` SAEs for grid seed ``seed``."""
    return derived_seed(check_seed(seed), _tuning.SEED_KEY_GRID_INIT,
                        check_int(width, "width", minimum=1))


@dataclass(repr=False)
class GridResult(Result):
    """Every SAE of a ``len(sparsity_coefs) x len(widths)`` grid; ``members`` row-major.

    ``result[i, j]`` is the :class:`TrainResult` at ``(sparsity_coefs[i], widths[j])``;
    ``result.metric("l0")`` and ``result.array(fn)`` give (n_coefs, n_widths) arrays.
    success : every member trained. layout : "pad", "group" or "sequential".
    n_iter, n_samples : steps and samples (the same for every member).
    wall_time : seconds for the whole grid.
    """

    success: bool
    message: str
    sparsity_coefs: tuple[float, ...]
    widths: tuple[int, ...]
    layout: str
    seed: int
    wall_time: float
    n_iter: int
    n_samples: int
    config: TrainConfig
    members: list[TrainResult]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.sparsity_coefs), len(self.widths)

    def index(self, k: int) -> tuple[int, int]:
        """(i, j) of ``members[k]``."""
        return divmod(check_int(k, "k", minimum=0, maximum=len(self.members) - 1),
                      self.shape[1])

    def __getitem__(self, index: tuple[int, int]) -> TrainResult:
        if not (isinstance(index, tuple) and len(index) == 2):
            raise TypeError(f"index must be a pair (i, j), got {index!r}")
        i = check_int(index[0], "i", minimum=0, maximum=self.shape[0] - 1)
        j = check_int(index[1], "j", minimum=0, maximum=self.shape[1] - 1)
        return self.members[i * self.shape[1] + j]

    def array(self, fn: Callable[[TrainResult], float]) -> np.ndarray:
        """(n_coefs, n_widths) float array of ``fn(member)``."""
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        return np.array([float(fn(m)) for m in self.members]).reshape(self.shape)

    def metric(self, name: str) -> np.ndarray:
        """(n_coefs, n_widths) array of a logged quantity's final value, e.g. ``"l0"``."""
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

    def to_dict(self, include_arrays: bool = False) -> dict:
        out = super().to_dict(include_arrays)
        for k, member in enumerate(out["members"]):
            member["index"] = list(self.index(k))
        return out

    def __str__(self) -> str:
        rows = [f"{'coef':>10} {'width':>6} {'loss':>10} {'recon':>10} {'l0':>7} {'dead':>5}"]
        for m in self.members:
            f = m.final
            rows.append(f"{m.sparsity_coef:>10.4g} {m.sae.width:>6d} {f['loss']:>10.4g} "
                        f"{f['reconstruction']:>10.4g} {f['l0']:>7.2f} {int(f['dead']):>5d}")
        head = (f"GridResult({self.shape[0]} coefs x {self.shape[1]} widths, "
                f"layout={self.layout}, {self.n_iter} steps, {self.wall_time:.1f}s)")
        return "\n".join([head, *rows, self.message])

    __repr__ = __str__


def _check_grid(sparsity_coefs, widths, config, seed) -> tuple[tuple, tuple, int]:
    sparsity_coefs = check_tuple(sparsity_coefs, "sparsity_coefs", check_float, minimum=0.0)
    widths = check_tuple(widths, "widths", check_int, minimum=1)
    for name, values in (("sparsity_coefs", sparsity_coefs), ("widths", widths)):
        if len(set(values)) != len(values):
            raise ValueError(f"{name} must not repeat a value, got {values}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    return sparsity_coefs, widths, check_seed(seed)


def _dim(data, d) -> int:
    return data_dim(data) if d is None else check_int(d, "d", minimum=1)


def plan_layout(widths: Sequence[int], d: int, batch_size: int, layout: str = "auto"
                ) -> tuple[str, list[list[int]]]:
    """(layout used, member indices of each ensemble) for members of the given ``widths``."""
    check_choice(layout, "layout", LAYOUTS)
    real, padded = sum(widths), len(widths) * max(widths)
    if layout == "auto":
        small = (padded - real) * d * batch_size <= _tuning.GRID_PAD_WORK
        layout = "pad" if padded <= (1 + _tuning.GRID_PAD_FRACTION) * real or small else "group"
    if layout == "pad":
        return layout, [list(range(len(widths)))]
    return layout, [[k for k, w in enumerate(widths) if w == width]
                    for width in sorted(set(widths))]


def _summary(members: list[TrainResult]) -> tuple[bool, str]:
    return all(m.success for m in members), f"{len(members)} SAEs: {members[0].message}"


def train_grid(data, sparsity_coefs: Sequence[float], widths: Sequence[int],
               config: TrainConfig, *, seed: int = 0, layout: str = "auto",
               d: int | None = None, options: RunOptions | None = None,
               **run_options) -> GridResult:
    """Train the ReLU+L1 SAE of every (penalty, width) pair as one batched model.

    data : as for :func:`train_sae` (a ground-truth world, (n, d) array, or an
        iterable of batches, then ``d`` is required); ``config.sparsity_coef``
        is ignored, each member uses its own ``sparsity_coefs[i]``.
    seed : the grid's init seed (module docstring).
    layout : "auto", "pad" or "group" (module docstring).
    d : the SAEs' input width; required when it cannot be read off ``data`` (an
        iterable of batches, or an objective whose batches are a host's inputs).
    options, **run_options : a :class:`toysae.sae.RunOptions` and/or its fields as
        keywords, as for :func:`train_sae`: ``eval_fn(sae) -> {name: float}`` and
        the callbacks see every member (numbered row-major over the grid only
        with ``layout="pad"``: each ensemble's members in turn otherwise);
        ``record_dictionaries`` keeps each member's dictionary at each logging
        step; checkpointing saves and resumes the whole grid's run bit-identically
        (:func:`toysae.sae.train_members`).
    """
    options = RunOptions.of(options, **run_options)
    sparsity_coefs, widths, seed = _check_grid(sparsity_coefs, widths, config, seed)
    d = _dim(data, d)
    pairs = [(coef, w) for coef in sparsity_coefs for w in widths]
    layout, groups = plan_layout([w for _, w in pairs], d, config.batch_size, layout)
    ensembles = [ReLUSAEEnsemble(d, [pairs[k][1] for k in g],
                                 seeds=[member_seed(seed, pairs[k][1]) for k in g])
                 for g in groups]
    order = [k for g in groups for k in g]  # member number in the ensembles -> grid index
    trained = train_ensembles(ensembles, [pairs[k][0] for k in order], data, config,
                              options=options)
    members: list[TrainResult | None] = [None] * len(pairs)
    for n, k in enumerate(order):
        members[k] = trained[n]
    success, message = _summary(members)
    return GridResult(success, message, sparsity_coefs, widths, layout, seed,
                      trained[0].wall_time * len(pairs), trained[0].n_iter,
                      trained[0].n_samples, config, members)


def train_grid_sequential(data, sparsity_coefs: Sequence[float], widths: Sequence[int],
                          config: TrainConfig, *, seed: int = 0, d: int | None = None,
                          options: RunOptions | None = None,
                          **run_options) -> GridResult:
    """The same grid as :func:`train_grid`, one ``train_sae`` call per SAE (the reference).

    ``data`` must be replayable (a ground-truth world, an array, or a re-iterable
    such as a list), because every SAE reads the same stream from its start.
    ``options, **run_options``: as for :func:`train_grid`, given to every SAE's
    run (each a run of one member), without checkpointing: one checkpoint holds
    one run, so checkpoint :func:`train_grid` instead.
    """
    options = RunOptions.of(options, **run_options)
    if options.checkpointing:
        raise ValueError("train_grid_sequential trains one run per SAE and a checkpoint holds "
                         "one run: checkpoint_every, checkpoint_path and resume_from apply to "
                         "train_grid")
    sparsity_coefs, widths, seed = _check_grid(sparsity_coefs, widths, config, seed)
    if isinstance(data, Iterator):
        raise ValueError("data is a one-shot iterator; train_grid_sequential replays the data "
                         "for every SAE, so pass a ground-truth world (SyntheticData), an array or "
                         "a list of batches")
    d = _dim(data, d)
    members = [train_sae(ReLUSAE(d, width, seed=member_seed(seed, width)), data,
                         config.replace(sparsity_coef=coef), options=options)
               for coef in sparsity_coefs for width in widths]
    success, message = _summary(members)
    return GridResult(success, message, sparsity_coefs, widths, "sequential", seed,
                      sum(m.wall_time for m in members), members[-1].n_iter,
                      members[-1].n_samples, config, members)
