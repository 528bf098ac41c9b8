"""The training loop's public hooks: log or intervene in a run without editing the engine.

A callback is a :class:`Callback` subclass that overrides any of three hooks;
the engine (``toysae.sae.engine``) calls the overridden ones, in the order the
callbacks were given, with one :class:`TrainingState` per run:

``on_start(state)``
    once per session, before its first step (``state.step`` is 0, or the
    steps a resumed checkpoint had trained); not called when a resumed run had
    already finished.
``on_step(state)``
    after every optimizer step, once the step's dead latents were resampled and
    before its divergence check, history row and checkpoint.
``on_log(state, rows)``
    at each logging step, after the divergence check: ``rows`` holds one dict
    per member, that member's history row about to be appended; a callback adds
    columns by setting new keys (real numbers). The engine's own columns may
    not be changed.

A hook may read anything :class:`TrainingState` offers and intervene through
it: ``state.lr_scale`` multiplies the scheduled learning rate from the next
step on, the optimizer and the member SAEs are live objects, and raising
:class:`StopTraining` ends the run after the current step. Any other
exception propagates out of the trainer. A callback is not part of a
checkpoint: pass it again to resume, and it sees only the steps of the session
it is given to (``on_start`` tells it where that session begins). With no
callback and no ``eval_fn`` the loop does no callback work at all.

``eval_fn`` (the trainers' argument) is one use: :class:`EvalFnCallback` runs
it for each member at each logging step and adds its ``{name: float}`` to the
row.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from toysae._validation import check_float
from toysae.sae.base import SparseAutoencoder

if TYPE_CHECKING:  # the engine imports this module; it is only named here
    from toysae.sae.config import TrainConfig
    from toysae.sae.engine import Engine
    from toysae.sae.stacks import MemberStack

__all__ = ["Callback", "EvalFnCallback", "StopTraining", "TrainingState"]

HOOKS = ("on_start", "on_step", "on_log")


class StopTraining(Exception):
    """Raise it from ``on_step`` or ``on_log`` to end the run after the current step.

    That step is the run's last: its divergence check runs, it gets a history
    row (even off the ``log_every`` grid, as when data ends early), the other
    callbacks' hooks for it still run, and with checkpointing it is written as
    the finished checkpoint. The results have ``success=True`` and a message
    naming the callback, the step and ``str(exception)`` as the reason. Raised
    from ``on_start`` it propagates like any exception.
    """


class Callback:
    """Base of the engine's hooks; each is a no-op here (module docstring).

    Override ``on_start``, ``on_step`` or ``on_log``; the engine calls only the
    hooks a subclass overrides, so a callback that logs at logging steps adds
    nothing to the other steps.
    """

    def on_start(self, state: TrainingState) -> None:
        """Before the session's first step."""

    def on_step(self, state: TrainingState) -> None:
        """After each optimizer step."""

    def on_log(self, state: TrainingState, rows: list[dict[str, float]]) -> None:
        """At each logging step; ``rows[k]`` is member ``k``'s history row, to add to."""

    def hooks(self) -> dict[str, object]:
        """``{hook name: bound method}`` of the hooks this callback overrides."""
        return {name: getattr(self, name) for name in HOOKS
                if getattr(type(self), name) is not getattr(Callback, name)}


class TrainingState:
    """A live view of a run, handed to every hook; valid during the call.

    step : steps trained, the step just taken counted (as history's ``step``).
    n_steps : the planned steps. n_samples : samples trained on.
    lr : the learning rate of the step just taken (``config.lr`` x the schedule x
        ``lr_scale``); None before the session's first step.
    sparsity_factor : the sparsity warm-up's factor of that step (member ``k``'s
        coefficient was ``sparsity_coefs[k] * sparsity_factor``).
    lr_scale : settable; multiplies the scheduled learning rate from the next step
        on (1.0: the schedule as configured). Not checkpointed: a resumed session
        starts at 1.0.
    config, sparsity_coefs, n_members, optimizer, stacks : the run's.
    current_sparsity_coefs : the coefficients the next step uses (``target_l0`` moves them).
    """

    def __init__(self, engine: Engine):
        self._engine = engine
        self._lr_scale = 1.0
        self._batch: Tensor | None = None
        self._parts: list[dict[str, Tensor]] | None = None
        self.lr: float | None = None
        self.sparsity_factor: float | None = None

    def _observe(self, batch: Tensor, lr: float, factor: float, parts) -> None:
        self._batch, self.lr, self.sparsity_factor, self._parts = batch, lr, factor, parts

    @property
    def lr_scale(self) -> float:
        return self._lr_scale

    @lr_scale.setter
    def lr_scale(self, value: float) -> None:
        self._lr_scale = check_float(value, "lr_scale", minimum=0.0)

    @property
    def step(self) -> int:
        return self._engine.n_iter

    @property
    def n_steps(self) -> int:
        return self._engine.n_steps

    @property
    def n_samples(self) -> int:
        return self._engine.n_samples

    @property
    def config(self) -> TrainConfig:
        return self._engine.cfg

    @property
    def sparsity_coefs(self) -> tuple[float, ...]:
        """Each member's configured coefficient (before the warm-up's factor)."""
        return tuple(self._engine.member_coefs)

    @property
    def current_sparsity_coefs(self) -> tuple[float, ...]:
        """Each member's coefficient now (before the warm-up's factor): the configured
        one, or where the L0 controller has moved it (``config.target_l0``)."""
        return tuple(self._engine.current_coef(k) for k in range(len(self._engine.where)))

    @property
    def n_members(self) -> int:
        return len(self._engine.where)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._engine.optimizer

    @property
    def stacks(self) -> tuple[MemberStack, ...]:
        return tuple(self._engine.stacks)

    def member(self, k: int) -> SparseAutoencoder:
        """Member ``k`` as an SAE whose parameters alias its stack (train mode)."""
        g, m = self._member_index(k)
        return self._engine.stacks[g].member(m)

    @property
    def batch(self) -> Tensor:
        """The step's batch, (B, batch width), on the stacks' device."""
        self._require_step()
        return self._batch

    def loss_parts(self) -> list[dict[str, float]]:
        """Each member's loss parts on the step just taken: ``loss``, the objective's
        parts, ``sparsity`` and ``auxiliary`` (at a logging step, the row's values)."""
        self._require_step()
        out: list[dict[str, float]] = []
        for named in self._parts:
            values = {key: value.tolist() for key, value in named.items() if key != "_codes"}
            out.extend({key: column[m] for key, column in values.items()}
                       for m in range(len(named["loss"])))
        return out

    def codes(self, k: int) -> Tensor:
        """Member ``k``'s codes on the step's batch, (B, width_k), detached."""
        self._require_step()
        g, m = self._member_index(k)
        return self._parts[g]["_codes"][m, :, :self._engine.stacks[g].widths[m]]

    def _member_index(self, k: int) -> tuple[int, int]:
        where = self._engine.where
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(where):
            raise ValueError(f"k must be a member index in [0, {len(where)}), got {k!r}")
        return where[k]

    def _require_step(self) -> None:
        if self._parts is None:
            raise RuntimeError("no step has been taken in this session yet (on_start)")


def check_rows(rows: list[dict], engine_rows: list[dict], hook) -> None:
    """TypeError naming ``callbacks`` when an ``on_log`` hook changed an engine column or
    put a value that is not a real number in a history row."""
    owner = f"callbacks: {type(hook.__self__).__name__}.on_log"
    for k, (row, mine) in enumerate(zip(rows, engine_rows, strict=True)):
        for key, value in mine.items():
            if row.get(key, None) is not value:
                raise TypeError(f"{owner} changed the engine's column {key!r} of member {k}'s "
                                "history row; add columns under new names")
        for key, value in row.items():
            if not isinstance(key, str) or isinstance(value, bool) \
                    or not isinstance(value, numbers.Real):
                raise TypeError(f"{owner} put {key!r}: {value!r} in member {k}'s history row; "
                                "a column is a str name and a real number")


class EvalFnCallback(Callback):
    """``eval_fn(sae) -> {name: float}`` for each member at each logging step (eval
    mode, no grad, on a view valid during the call), its values added to the row.

    What the trainers' ``eval_fn`` argument installs, ahead of ``callbacks``.
    TypeError when ``eval_fn`` returns anything but a dict; ValueError when it
    returns a name already in the row.
    """

    def __init__(self, eval_fn):
        if not callable(eval_fn):
            raise TypeError(f"eval_fn must be callable, got {type(eval_fn).__name__}")
        self.eval_fn = eval_fn

    def on_log(self, state: TrainingState, rows: list[dict[str, float]]) -> None:
        for k, row in enumerate(rows):
            view = state.member(k)
            view.eval()
            row.update(_evaluate(self.eval_fn, view, row))
            view.train()


def _evaluate(eval_fn, sae: SparseAutoencoder, row: dict) -> dict[str, float]:
    with torch.no_grad():
        extra = eval_fn(sae)
    if not isinstance(extra, dict):
        raise TypeError(f"eval_fn must return a dict, got {type(extra).__name__}")
    clash = set(extra) & set(row)
    if clash:
        names = ", ".join(repr(c) for c in sorted(clash))
        raise ValueError(f"eval_fn returned {names}, name(s) the engine already logs")
    return {key: float(value) for key, value in extra.items()}
