"""An active-set lasso solver for large dictionaries: per-sample working sets, exact refits.

Every round, each unfinished sample gets a working set of atoms, its codes on
that set are solved for, and the *full* KKT gap (``g = c - zG`` on all
``n_atoms`` atoms, kept up to date by one gathered product) decides whether the
sample is done. The answer is therefore as exact as the dense solver's
(:func:`toysae.dictlearn.lasso._fista.prox_grad`); only the work is small (``m**2``
per sample instead of ``n_atoms**2``). The rounds:

- :func:`first_round` (from zero codes): the ``first_set`` atoms with the
  largest responses ``c_j > lam``, solved by ``_sets.refit_on_support`` alone
  (one Cholesky solve, atoms that come out negative dropped and the solve
  repeated). On the reference toy this finishes about 2/3 of the samples:
  those whose optimal support lies among their 8 largest responses. Where most
  samples keep every atom of the guess (wider supports), those are guessed again
  with twice the atoms, up to ``FIRST_SET_MAX``, and the cap grows with it.
- :func:`later_round`: the support plus the atoms that violate KKT
  (``g_j > lam``), largest first, at most ``cap``; dense FISTA solves the set
  problem (Gershgorin bound of the Gram block as ``L``, tolerance ``0.1``
  tightening tenfold each round down to ``tol``), which guarantees progress,
  and a refit then makes the codes exact once the support and signs are right
  (kept only where it does not raise the objective).

The unfinished samples live in one :class:`RowState` (one row per sample);
after each round :func:`retire` takes out the samples that are done and
compacts the rest with one index (:meth:`RowState.keep`). Samples whose
support fills the cap have no room for new atoms: those of every round form one
new group, warm started from their codes, whose cap is ``SET_GROWTH`` times as large, while
``SET_GROWTH**2 * cap <= n_atoms``; past that the dense solver finishes them.
:func:`working_set_prox_grad` works through those groups in a loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from toysae import _tuning
from toysae._buffers import Workspace
from toysae._tuning import (
    FIRST_SET,
    FIRST_SET_MAX,
    MAX_SET,
    ROW_BLOCK,
    SET_GROWTH,
    WORKING_SET_ABOVE,
)
from toysae.dictlearn.lasso._fista import LassoOutput, prox_grad
from toysae.dictlearn.lasso._sets import (
    gram_blocks,
    minus_gram_times,
    refit_if_better,
    row_counts,
    set_kkt,
)

# The two workspace buffers the (rows, n_atoms) responses alternate between.
_RESPONSE = ("lasso.response.0", "lasso.response.1")


# ---------------------------------------------------------------------------- working sets
def _move_to_sets(S_old: torch.Tensor, values: torch.Tensor, S_new: torch.Tensor,
                  valid: torch.Tensor) -> torch.Tensor:
    """Codes given on sets ``S_old`` re-expressed on sets ``S_new`` (atoms not in it drop).

    The match is an (rows, m_new, m_old) comparison, formed for blocks of rows so that
    it stays under ``_tuning.MOVE_BLOCK_ENTRIES`` entries: a dense warm start makes
    ``m_old`` the number of atoms (4,096 samples x 4,096 atoms asked for 36 GB at once).
    """
    n, m_new, m_old = S_new.shape[0], S_new.shape[1], S_old.shape[1]
    rows = max(1, _tuning.MOVE_BLOCK_ENTRIES // max(1, m_new * m_old))
    out = values.new_empty(n, m_new)
    for start in range(0, n, rows):
        b = slice(start, start + rows)
        same = (S_new[b, :, None] == S_old[b, None, :]) & (valid[b, :, None] != 0)
        torch.sum(same * values[b, None, :], dim=2, out=out[b])
    return out


def _full_kkt(z_set: torch.Tensor, g: torch.Tensor, S: torch.Tensor, lam: float,
              nonneg: bool) -> torch.Tensor:
    """Per-sample KKT violation when the whole support lies in the set ``S``.

    Off the support the violation is ``(g - lam)_+`` (``(|g| - lam)_+``), whose max
    over all atoms is one reduction; on the support it is read on the set only.
    """
    top = g.amax(dim=1) if nonneg else g.abs().amax(dim=1)
    return set_kkt(z_set, g.gather(1, S), top, lam, nonneg)


def _index_sets(member: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, n_atoms) membership -> (n, m) atom indices, ascending, padded with atom 0, and a
    0/1 mask of the real entries."""
    n = member.shape[0]
    count = row_counts(member)
    m = max(int(count.max()), 1) if n else 1
    rows, cols = torch.nonzero(member, as_tuple=True)
    starts = torch.cumsum(count, 0) - count
    pos = torch.arange(rows.numel(), device=member.device) - starts[rows]
    S = torch.zeros(n, m, dtype=torch.long, device=member.device)
    S[rows, pos] = cols
    valid = torch.zeros(n, m, dtype=dtype, device=member.device)
    valid[rows, pos] = 1.0
    return S, valid


def _next_sets(S: torch.Tensor, z_set: torch.Tensor, g: torch.Tensor, lam: float,
               nonneg: bool, cap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's support plus its KKT violators (largest responses first, up to ``cap``)."""
    on = z_set != 0
    member = g > lam if nonneg else g.abs() > lam
    # Support atoms are members whatever their response (padding adds nothing).
    member.view(torch.uint8).scatter_reduce_(1, S, on.to(torch.uint8), reduce="amax")
    over = row_counts(member) > cap
    if bool(over.any()):
        rows = torch.nonzero(over).squeeze(1)
        response = g.index_select(0, rows)
        if not nonneg:
            response.abs_()
        # The support ranks first (+inf), then the largest violations.
        flag = torch.where(on[rows], torch.inf, -torch.inf).to(g.dtype)
        response.scatter_reduce_(1, S[rows], flag, reduce="amax")
        top = response.topk(cap, dim=1).indices
        member[rows] = torch.zeros_like(member[rows]).scatter_(1, top, True)
    return _index_sets(member, g.dtype)


# ---------------------------------------------------------------------------- row state
@dataclass
class RowState:
    """The unfinished samples of a working-set solve, one row each.

    sample : (r,) index of each row's sample in the batch (a row of ``C``).
    atoms : (r, m) each row's working set (padding repeats atom 0).
    codes : (r, m) the codes on that set (exact zeros on padding).
    response : (r, n_atoms) ``g = c - z G`` over all atoms, in the workspace
        buffer ``_RESPONSE[slot]``.
    used : (r,) FISTA iterations spent at this level.
    kkt : (r,) scaled KKT gap of the codes.
    """

    sample: torch.Tensor
    atoms: torch.Tensor
    codes: torch.Tensor
    response: torch.Tensor
    used: torch.Tensor
    kkt: torch.Tensor
    slot: int

    def __len__(self) -> int:
        return self.sample.numel()

    def keep(self, rows: torch.Tensor, workspace: Workspace) -> RowState:
        """The state of ``rows`` (a 1-D index) only: every field compacted by that one index,
        the responses into the other workspace buffer (this one's is released)."""
        other = 1 - self.slot
        response = torch.index_select(
            self.response, 0, rows,
            out=workspace.empty(_RESPONSE[other], (rows.numel(), self.response.shape[1]),
                                self.response.dtype, self.response.device))
        workspace.release(_RESPONSE[self.slot])
        sample, atoms, codes, used, kkt = (
            a.index_select(0, rows) for a in (self.sample, self.atoms, self.codes, self.used,
                                              self.kkt))
        return RowState(sample, atoms, codes, response, used, kkt, other)


def _response_buffer(workspace: Workspace, rows: int, like: torch.Tensor) -> torch.Tensor:
    return workspace.empty(_RESPONSE[0], (rows, like.shape[1]), like.dtype, like.device)


def first_round(C: torch.Tensor, G: torch.Tensor, lam: float, *, nonneg: bool,
                first_set: int, scale: float, workspace: Workspace,
                D: torch.Tensor | None = None) -> RowState:
    """Round 0 from zero codes, for every sample: a refit on the largest responses.

    From zero codes nearly every atom with ``c_j > lam`` violates KKT: the
    first guess is the ``first_set`` largest responses above lam, refit exactly
    (no iterations), atoms that come out negative dropped. While more than half
    of the samples keep every atom of their guess (their supports are likely
    larger), those samples are guessed again with twice as many atoms, up to
    ``FIRST_SET_MAX``; the sets are padded to the widest guess.
    """
    n, n_atoms = C.shape
    k = min(first_set, n_atoms)
    score = C if nonneg else C.abs()
    rows = None  # every sample, then those that kept their whole guess
    while True:
        # topk over every row even when fewer grow: they are more than half of them, and
        # gathering their (n_atoms,)-wide rows first costs more than the rest's topk
        top = score.topk(k, dim=1)
        atoms = top.indices if rows is None else top.indices.index_select(0, rows)
        c_set = C.gather(1, atoms) if rows is None else C[rows[:, None], atoms]
        valid = ((c_set if nonneg else c_set.abs()) > lam).to(C.dtype)
        z_r = refit_if_better(c_set * valid, gram_blocks(G, atoms), torch.zeros_like(valid),
                               lam, nonneg, support=valid != 0)
        if rows is None:
            S, z_set = atoms, z_r
        else:
            S = torch.cat([S, S.new_zeros(n, k - S.shape[1])], dim=1)
            z_set = torch.cat([z_set, z_set.new_zeros(n, k - z_set.shape[1])], dim=1)
            S[rows], z_set[rows] = atoms, z_r
        full = row_counts(z_r != 0) == k
        if 2 * k > min(FIRST_SET_MAX, n_atoms) or 2 * int(full.sum()) <= len(z_r):
            break
        rows = torch.nonzero(full).squeeze(1) if rows is None else rows[full]
        k *= 2
    g = _response_buffer(workspace, n, C)
    for i in range(0, n, ROW_BLOCK):  # blocks: torch's temporaries stay small
        block = slice(i, i + ROW_BLOCK)
        minus_gram_times(C[block], S[block], z_set[block], G, D, out=g[block])
    kkt = _full_kkt(z_set, g, S, lam, nonneg) / scale
    return RowState(torch.arange(n, device=C.device), S, z_set, g,
                    torch.zeros(n, dtype=torch.long, device=C.device), kkt, 0)


def warm_state(C: torch.Tensor, G: torch.Tensor, lam: float, samples: torch.Tensor,
               init: torch.Tensor, *, nonneg: bool, scale: float,
               workspace: Workspace, D: torch.Tensor | None = None) -> RowState:
    """The state of ``samples`` (rows of ``C``) at the warm-start codes ``init`` (r, n_atoms)."""
    z0 = init.clamp(min=0.0) if nonneg else init
    S, valid = _index_sets(z0 != 0, C.dtype)
    z_set = z0.gather(1, S) * valid
    g = _response_buffer(workspace, samples.numel(), C)
    if samples.numel() == C.shape[0] and bool(
            (samples == torch.arange(samples.numel(), device=samples.device)).all()):
        g.copy_(C)
    else:
        torch.index_select(C, 0, samples, out=g)
    minus_gram_times(g, S, z_set, G, D, out=g)
    kkt = _full_kkt(z_set, g, S, lam, nonneg) / scale
    return RowState(samples, S, z_set, g,
                    torch.zeros(samples.numel(), dtype=torch.long, device=C.device), kkt, 0)


def later_round(state: RowState, C: torch.Tensor, G: torch.Tensor, lam: float, *,
                nonneg: bool, accelerate: bool, budget: int, tol: float, scale: float,
                cap: int, D: torch.Tensor | None = None) -> RowState:
    """One round on the support plus the KKT violators (at most ``cap`` atoms): FISTA on
    the set problem to ``tol``, then an exact refit where it helps; updates the state."""
    S, valid = _next_sets(state.atoms, state.codes, state.response, lam, nonneg, cap)
    z_start = _move_to_sets(state.atoms, state.codes, S, valid)  # every support atom stays
    c_set = C[state.sample[:, None], S] * valid
    Gs = gram_blocks(G, S) * (valid[:, :, None] * valid[:, None, :])
    L = Gs.abs().sum(dim=2).amax(dim=1, keepdim=True)
    out = prox_grad(c_set, Gs, lam, nonneg=nonneg, accelerate=accelerate,
                    max_iter=budget - int(state.used.max()), tol=tol, init=z_start,
                    scale=scale, L=L, mask=valid)
    z_set = refit_if_better(c_set, Gs, out.codes, lam, nonneg)
    # g = c - z G, updated in place by the change of the codes.
    g = minus_gram_times(state.response, S, z_set - z_start, G, D, out=state.response)
    kkt = _full_kkt(z_set, g, S, lam, nonneg) / scale
    return RowState(state.sample, S, z_set, g, state.used + out.n_iter, kkt, state.slot)


# ---------------------------------------------------------------------------- the solve
class _Finished:
    """Per-sample outcome of the whole solve, filled in as samples retire."""

    def __init__(self, n: int, n_atoms: int, dtype: torch.dtype, device):
        self.n, self.n_atoms = n, n_atoms
        self.kkt = torch.full((n,), math.inf, dtype=dtype, device=device)
        self.n_iter = torch.zeros(n, dtype=torch.long, device=device)
        self.success = torch.zeros(n, dtype=torch.bool, device=device)
        self.sets: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def add(self, samples, atoms, codes, kkt, n_iter, success) -> None:
        """Samples done; ``n_iter`` adds to the iterations of earlier levels."""
        self.sets.append((samples, atoms, codes))
        self.kkt[samples] = kkt
        self.n_iter[samples] += n_iter
        self.success[samples] = success

    def output(self) -> LassoOutput:
        m = max((S.shape[1] for _, S, _ in self.sets), default=1)
        device = self.kkt.device
        S_all = torch.zeros(self.n, m, dtype=torch.long, device=device)
        z_sets = torch.zeros(self.n, m, dtype=self.kkt.dtype, device=device)
        for idx, S, z_set in self.sets:
            S_all[idx, :S.shape[1]] = S
            z_sets[idx, :S.shape[1]] = z_set
        return LassoOutput(self.kkt, self.n_iter, self.success, sets=(S_all, z_sets),
                           n_atoms=self.n_atoms)


@dataclass
class _Group:
    """Samples solved together at one cap: indices into ``C``, warm start (or None for
    cold), the cap, and the iteration budget of the group."""

    samples: torch.Tensor
    init: torch.Tensor | None
    cap: int
    budget: int


@dataclass
class _Overflow:
    """Samples whose support filled the cap: indices, dense codes, iterations used there."""

    samples: torch.Tensor
    codes: torch.Tensor
    used: torch.Tensor


def retire(state: RowState, *, tol: float, budget: int, cap: int, last: bool,
           finished: _Finished, overflow: list[_Overflow],
           workspace: Workspace) -> RowState | None:
    """Take the done samples out of ``state`` and compact the rest (None when none is left).

    A sample is done once its KKT gap is <= ``tol``, its iterations reach
    ``budget``, or on the ``last`` round; one whose support fills ``cap`` atoms
    has no room for new atoms and goes to ``overflow`` (a group of the next cap).
    """
    success = state.kkt <= tol
    stop = success | (state.used >= budget) | last
    full = ~stop & (row_counts(state.codes != 0) >= cap)
    if bool(full.any()):
        rows = torch.nonzero(full).squeeze(1)
        dense = torch.zeros(rows.numel(), finished.n_atoms, dtype=state.codes.dtype,
                            device=state.codes.device)
        dense.scatter_add_(1, state.atoms[rows], state.codes[rows])
        overflow.append(_Overflow(state.sample[rows], dense, state.used[rows]))
        finished.n_iter[state.sample[rows]] += state.used[rows]
        stop = stop | full
    if not bool(stop.any()):
        return state
    rows = torch.nonzero(stop & ~full).squeeze(1)
    finished.add(state.sample[rows], state.atoms[rows], state.codes[rows], state.kkt[rows],
                 state.used[rows], success[rows])
    keep = torch.nonzero(~stop).squeeze(1)
    if keep.numel() == 0:
        workspace.release(_RESPONSE[state.slot])
        return None
    return state.keep(keep, workspace)


def working_set_prox_grad(C: torch.Tensor, G: torch.Tensor, lam: float, *, nonneg: bool,
                          accelerate: bool, max_iter: int, tol: float,
                          init: torch.Tensor | None, scale: float, max_set: int = MAX_SET,
                          first_set: int = FIRST_SET, max_rounds: int = 100,
                          workspace: Workspace | None = None,
                          D: torch.Tensor | None = None) -> LassoOutput:
    """The active-set lasso solve of every row of ``C`` (see the module docstring).

    C : (n, n_atoms) correlations ``X D^T``; G : (n_atoms, n_atoms) Gram ``D D^T``;
    init : (n, n_atoms) warm start or None; max_set : the first cap;
    D : the dictionary (n_atoms, d) whose Gram ``G`` is, or None; with it the
    responses are updated through ``D`` where that is cheaper (:func:`minus_gram_times`);
    first_set : atoms of the cold first round; max_rounds : rounds per group.
    The scratch (rows, n_atoms) responses live in ``workspace`` (a fresh one if
    None). The result carries the codes as index sets (``LassoOutput.sets``);
    its dense ``codes`` are built on first access.

    A chain of groups, no recursion: the batch is the first group; the samples
    of a group whose support fills its cap (in any of its rounds) form the next group, with
    ``SET_GROWTH`` times the cap and the iterations left (at least one), while
    ``SET_GROWTH**2 * cap <= n_atoms``; past that the dense solver finishes them.
    """
    n, n_atoms = C.shape
    workspace = Workspace() if workspace is None else workspace
    finished = _Finished(n, n_atoms, C.dtype, C.device)
    group = _Group(torch.arange(n, device=C.device), init, max_set, max_iter) if n else None
    with workspace.session():
        while group is not None:
            overflow: list[_Overflow] = []
            _solve_group(C, G, lam, group, nonneg=nonneg, accelerate=accelerate, tol=tol,
                         scale=scale, first_set=first_set, max_rounds=max_rounds,
                         finished=finished, overflow=overflow, workspace=workspace, D=D)
            if not overflow:
                break
            # One next group for every round's overflow: each group pays its own start and
            # rounds, and the overflow of a round is often a handful of samples.
            full = _Overflow(torch.cat([o.samples for o in overflow]),
                             torch.cat([o.codes for o in overflow]),
                             torch.cat([o.used for o in overflow]))
            budget = max(group.budget - int(full.used.max()), 1)
            if SET_GROWTH ** 2 * group.cap <= n_atoms:
                group = _Group(full.samples, full.codes, SET_GROWTH * group.cap, budget)
            else:  # a bigger set would cost about what the dense solver does
                group = None
                out = prox_grad(C[full.samples], G, lam, nonneg=nonneg,
                                accelerate=accelerate, max_iter=budget, tol=tol,
                                init=full.codes, scale=scale)
                S, valid = _index_sets(out.codes != 0, C.dtype)
                finished.add(full.samples, S, out.codes.gather(1, S) * valid, out.kkt,
                             out.n_iter, out.success)
    return finished.output()


def _solve_group(C, G, lam, group: _Group, *, nonneg, accelerate, tol, scale, first_set,
                 max_rounds, finished: _Finished, overflow: list[_Overflow],
                 workspace: Workspace, D: torch.Tensor | None) -> None:
    """The rounds of one group until each of its samples retired or overflowed."""
    if group.init is None and max_rounds > 0:
        state = first_round(C, G, lam, nonneg=nonneg, first_set=first_set, scale=scale,
                            workspace=workspace, D=D)
        # A first guess grown to the cap would overflow at once: the cap (and so the
        # caps of the groups that overflow from it) grows with it.
        group.cap = max(group.cap, state.atoms.shape[1])
        start = 1
    else:
        init = torch.zeros_like(C) if group.init is None else group.init
        state = warm_state(C, G, lam, group.samples, init, nonneg=nonneg, scale=scale,
                           workspace=workspace, D=D)
        start = 0
    for round_ in range(start, max_rounds + 1):
        state = retire(state, tol=tol, budget=group.budget, cap=group.cap,
                       last=round_ == max_rounds, finished=finished, overflow=overflow,
                       workspace=workspace)
        if state is None:
            return
        state = later_round(state, C, G, lam, nonneg=nonneg, accelerate=accelerate,
                            budget=group.budget, tol=max(tol, 0.1 ** max(round_, 1)),
                            scale=scale, cap=min(group.cap, C.shape[1]), D=D)


def solve_lasso(C: torch.Tensor, G: torch.Tensor, lam: float, *, nonneg: bool,
                accelerate: bool, max_iter: int, tol: float, init: torch.Tensor | None,
                scale: float, working_set_above: int = WORKING_SET_ABOVE,
                workspace: Workspace | None = None,
                D: torch.Tensor | None = None) -> LassoOutput:
    """Dense prox-gradient for small dictionaries, working sets for large ones (``D``, the
    dictionary of ``G``, lets those update their responses through it)."""
    if G.shape[0] > working_set_above and lam > 0:
        return working_set_prox_grad(C, G, lam, nonneg=nonneg, accelerate=accelerate,
                                     max_iter=max_iter, tol=tol, init=init, scale=scale,
                                     workspace=workspace, D=D)
    return prox_grad(C, G, lam, nonneg=nonneg, accelerate=accelerate, max_iter=max_iter,
                     tol=tol, init=init, scale=scale)
