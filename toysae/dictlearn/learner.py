"""``DictionaryLearner``: alternate sparse coding and a dictionary update, a scikit-learn
estimator.

Each step codes a mini-batch with the current dictionary (batched FISTA on the
lasso objective of docs/design.md, or OMP for K-SVD) and then updates the
dictionary with the chosen rule (see :mod:`toysae.dictlearn.updates`):

- ``"bcd"``: Mairal et al.'s online method: accumulate ``A = sum z z^T`` and
  ``B = sum z^T x`` with a forgetting factor and do block coordinate descent;
- ``"mod"``: least squares on the same accumulated statistics, renormalised
  (full-batch MOD when ``batch_size >= n_samples`` and ``forget_rate`` is large);
- ``"ksvd"``: K-SVD on each mini-batch, codes by OMP with ``n_nonzero`` atoms.

Atoms that no sample has used for ``dead_after`` samples are re-initialised
from the worst-reconstructed samples of the current batch.

The estimator follows scikit-learn's contract: ``__init__`` stores its
parameters, ``fit``/``partial_fit`` validate them (and the data) before any
work, fitted attributes end in ``_``, and ``get_params``/``set_params``/
``clone``/``fit_transform`` behave as for any scikit-learn transformer.
scikit-learn only checks the data at this boundary; the solvers never see it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data
from tqdm import tqdm

from toysae._buffers import Workspace
from toysae._result import History
from toysae._threads import check_threads, thread_count
from toysae._tuning import CODING_SMALL_WORK, MAX_WARM_ENTRIES
from toysae._validation import (
    check_choice,
    check_float,
    check_int,
    check_norm_range,
    check_seed,
    row_norms,
    tensor_to_numpy,
    to_numpy,
    unit_row_deviation,
)
from toysae.dictionary_objective import objective_from_parts
from toysae.dictlearn.lasso import omp, solve_lasso
from toysae.dictlearn.sparse_coding import sparse_code
from toysae.dictlearn.updates import bcd_update, ksvd_update, mod_update

UPDATES = ("bcd", "mod", "ksvd")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype) -> torch.dtype:
    """torch.float32/float64 from a torch dtype, a numpy float type or its name."""
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    if dtype in (np.float32, np.float64):
        return _DTYPES[np.dtype(dtype).name]
    raise ValueError(f"dtype must be 'float32' or 'float64' (or torch.float32/torch.float64), "
                     f"got {dtype!r}")


def _duplicate_atoms(D: np.ndarray, used: np.ndarray, cos: float) -> np.ndarray:
    """(n_atoms,) bool: the used atoms whose cosine with a lower-indexed used atom is >=
    ``cos`` (of each parallel group, all but the first)."""
    unit = D / np.maximum(np.linalg.norm(D, axis=1, keepdims=True), 1e-12)
    G = np.triu(unit @ unit.T, 1)
    G[~used] = 0.0
    return (G >= cos).any(0) & used


class DictionaryLearner(TransformerMixin, BaseEstimator):
    """Learn a dictionary ``D`` (n_atoms, d) with unit rows minimising

    ``1/2 sum_n ||x_n - z_n D||^2 + lam sum_n ||z_n||_1`` (``Z >= 0`` if nonneg).

    Parameters
    ----------
    n_atoms : number of atoms (rows of the dictionary), >= 1.
    lam : L1 penalty (``>= 0``; ``> 0`` for bcd/mod) of the coding step (fista)
        and of the objective recorded in ``history_``.
    update : "bcd" (default), "mod" or "ksvd".
    nonneg : nonnegative codes (default) or signed.
    batch_size : samples per step.
    max_epochs : passes over ``X`` made by :meth:`fit`.
    n_nonzero : atoms per sample for OMP; required by "ksvd", unused otherwise.
    forget_rate : ``rho`` of the statistics' forgetting factor
        ``beta_t = (1 - 1/t)**rho`` (Mairal et al. 2010, section 3.4): the weight
        of step s in the statistics at step t grows like ``s**rho``. The default
        3 forgets the poor codes of the first steps quickly: on the reference
        toy (1024 atoms, batch 1024) it reaches MMCS 0.95 after about 12k
        samples where ``rho = 1`` needs about 14k.
    coding_tol, coding_max_iter : FISTA stopping rule during learning (KKT gap
        scaled by lam). Steps whose codes did not all converge are counted in
        ``history_["unconverged"]``. Above 96 atoms each code is also refit
        exactly on its support, so a loose rule (0.3, 50) loses little and is
        about twice as fast; below, codes are as accurate as the rule.
    dead_after : an atom unused for this many consecutive samples is
        re-initialised (default ``max(20 * n_atoms, 4 * batch_size)``).
    resample_dead : turn re-initialisation off with False.
    replace_duplicates : also re-initialise, in the same way, every atom whose cosine
        with a lower-indexed atom is at or above this (None, the default: off), as K-SVD's
        authors replace atoms too close to another (Aharon, Elad & Bruckstein 2006). Two
        parallel atoms split one feature's code at the same L1 cost, so the update never
        separates them; with as many atoms as features each such pair is a feature missed
        (docs/findings.md, "What does a width-equal dictionary miss?").
    init : "data" (random samples of X, normalised; default), "random"
        (Gaussian directions) or an (n_atoms, d) array.
    seed : seeds the initialisation, the batch order and resampling.
    device : torch device of the coding step (default the CPU).
    dtype : "float32" (default) or "float64" (torch dtypes accepted too) of the
        coding step; ``transform`` returns codes of that dtype.
    threads : torch threads for each step and ``transform`` (an int >= 1);
        None (default) runs a step on one thread when its dense work
        ``batch * n_atoms**2`` is below ``toysae._tuning.CODING_SMALL_WORK``
        and leaves the caller's count otherwise.
    progress : show a tqdm progress bar in :meth:`fit`.
    callback : ``callback(learner) -> dict | None`` called every
        ``callback_every`` steps; returned numbers are added to ``history_``
        (e.g. MMCS against a known truth). Its time is not counted in
        ``history_["time"]``.

    Attributes
    ----------
    components_ : (n_atoms, d) float32 numpy array, unit rows.
    dictionary : the same array (read-only property; every toysae learner has one).
    history_ : :class:`toysae._result.History` with one row per step (``step``,
        ``samples``, ``time`` (cumulative seconds), ``objective`` (per-sample
        objective of the batch before the update), ``coding_iters``,
        ``unconverged``, ``resampled``) plus the callback's keys.
    n_iter_, n_steps_ : steps taken since the learner was initialised (the same
        number: ``n_iter_`` under scikit-learn's name).
    n_samples_seen_ : samples seen since then. n_features_in_ : d.
    """

    def __init__(self, n_atoms: int, lam: float, *, update: str = "bcd", nonneg: bool = True,
                 batch_size: int = 256, max_epochs: int = 10, n_nonzero: int | None = None,
                 forget_rate: float = 3.0, coding_tol: float = 1e-2, coding_max_iter: int = 200,
                 dead_after: int | None = None, resample_dead: bool = True,
                 replace_duplicates: float | None = None, init="data",
                 seed: int = 0, device=None, dtype="float32", threads: int | None = None,
                 progress: bool = True, callback: Callable | None = None,
                 callback_every: int = 1):
        self.n_atoms = n_atoms
        self.lam = lam
        self.update = update
        self.nonneg = nonneg
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.n_nonzero = n_nonzero
        self.forget_rate = forget_rate
        self.coding_tol = coding_tol
        self.coding_max_iter = coding_max_iter
        self.dead_after = dead_after
        self.resample_dead = resample_dead
        self.replace_duplicates = replace_duplicates
        self.init = init
        self.seed = seed
        self.device = device
        self.dtype = dtype
        self.threads = threads
        self.progress = progress
        self.callback = callback
        self.callback_every = callback_every

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        """Validate every parameter (TypeError/ValueError naming it) and keep the resolved
        settings in private attributes. Called first by fit and partial_fit."""
        n_atoms = check_int(self.n_atoms, "n_atoms", minimum=1)
        lam = check_float(self.lam, "lam", minimum=0.0)
        check_choice(self.update, "update", UPDATES)
        for name in ("nonneg", "resample_dead", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        batch_size = check_int(self.batch_size, "batch_size", minimum=1)
        check_int(self.max_epochs, "max_epochs", minimum=1)
        if self.update == "ksvd":
            if self.n_nonzero is None:
                raise ValueError("n_nonzero is required with update='ksvd' (OMP sparsity)")
            check_int(self.n_nonzero, "n_nonzero", minimum=1, maximum=n_atoms)
        elif self.n_nonzero is not None:
            raise ValueError(f"n_nonzero is only used with update='ksvd', got "
                             f"{self.n_nonzero!r}")
        if self.update != "ksvd" and lam == 0:
            raise ValueError("lam must be > 0 for update='bcd'/'mod' (lam=0 codes are "
                             "not sparse and the lasso has no unique solution)")
        check_float(self.forget_rate, "forget_rate", minimum=0.0)
        check_float(self.coding_tol, "coding_tol", minimum=0.0, min_inclusive=False)
        check_int(self.coding_max_iter, "coding_max_iter", minimum=1)
        dead_after = (max(20 * n_atoms, 4 * batch_size) if self.dead_after is None else
                      check_int(self.dead_after, "dead_after", minimum=1))
        if self.replace_duplicates is not None:
            check_float(self.replace_duplicates, "replace_duplicates", minimum=0.0,
                        maximum=1.0, min_inclusive=False)
        if isinstance(self.init, str):
            check_choice(self.init, "init", ("data", "random"))
            init = self.init
        else:
            init = to_numpy(self.init, "init", ndim=2)
            if init.shape[0] != n_atoms:
                raise ValueError(f"init must have {n_atoms} rows (n_atoms), "
                                 f"got shape {init.shape}")
            unit_row_deviation(init, "init")
        check_seed(self.seed)
        dtype = resolve_dtype(self.dtype)
        try:
            device = torch.device("cpu" if self.device is None else self.device)
        except (TypeError, RuntimeError) as err:
            raise ValueError(f"device must name a torch device, got {self.device!r}") from err
        threads = check_threads(self.threads)
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be callable, got {type(self.callback).__name__}")
        check_int(self.callback_every, "callback_every", minimum=1)
        self._dead_after, self._init = dead_after, init
        self._dtype, self._device, self._threads = dtype, device, threads
        if not hasattr(self, "_workspace"):  # a cache kept across fits, never state
            self._workspace = Workspace()

    def _check_X(self, X, *, reset: bool) -> np.ndarray:
        """X as a float64 (n, d) array, with errors scikit-learn's checks accept; on a
        fitted learner its columns must match. Row norms above
        ``toysae._validation.norm_limit`` of the learner's dtype (float32 for "bcd",
        whose sweep runs in float32) are refused."""
        if isinstance(X, torch.Tensor):
            X = tensor_to_numpy(X)
        try:
            X = validate_data(self, X, reset=reset, dtype=np.float64)
        except ValueError as err:
            if not reset and "features as input" in str(err):  # scikit-learn's wording
                raise ValueError(f"{err} X's columns must match the dictionary's "
                                 f"{self.n_features_in_} columns.") from None
            if str(err).startswith("Found array with"):  # an empty X: name the argument
                raise ValueError(f"X (the data): {err}") from None
            raise
        # The coding step works in the learner's dtype and the BCD sweep in float32 (its
        # statistics hold squares of the codes): their squares must stay finite.
        dtype = torch.float32 if self.update == "bcd" else self._dtype
        check_norm_range(row_norms(X), "X", dtype, f"DictionaryLearner(update={self.update!r})")
        return X

    # ------------------------------------------------------------------ state
    @property
    def dictionary(self) -> np.ndarray:
        """The learned (n_atoms, d) dictionary, unit rows, float32: ``components_``."""
        check_is_fitted(self, "components_")
        return self.components_

    def _reset(self, X: np.ndarray) -> None:
        self._rng = np.random.default_rng(self.seed)
        n_atoms, d = self.n_atoms, X.shape[1]
        if isinstance(self._init, np.ndarray):
            if self._init.shape[1] != d:
                raise ValueError(f"init has {self._init.shape[1]} columns but X has {d}")
            D = self._init.copy()
        elif self._init == "data":
            replace = X.shape[0] < n_atoms
            D = X[self._rng.choice(X.shape[0], n_atoms, replace=replace)].copy()
            # Repeated or zero samples would give equal or undefined atoms: jitter them.
            D += 1e-3 * np.linalg.norm(D, axis=1, keepdims=True).mean() * \
                self._rng.standard_normal(D.shape)
            D[np.linalg.norm(D, axis=1) == 0] = self._rng.standard_normal(d)
        else:
            D = self._rng.standard_normal((n_atoms, d))
        self._D = D / np.linalg.norm(D, axis=1, keepdims=True)
        self._A = np.zeros((n_atoms, n_atoms))
        self._B = np.zeros((n_atoms, d))
        self._last_used = np.zeros(n_atoms, dtype=np.int64)
        self._clock = 0.0
        self.components_ = self._D.astype(np.float32)
        self.n_steps_ = self.n_iter_ = 0
        self.n_samples_seen_ = 0
        self.history_ = History()

    # ------------------------------------------------------------------ steps
    def _code(self, Xb: torch.Tensor, D: torch.Tensor, init: torch.Tensor | None):
        """Codes of the batch as a scipy CSR matrix (float64), iterations, unconverged."""
        ws, n_atoms, dtype, device = self._workspace, self.n_atoms, self._dtype, self._device
        C = torch.mm(Xb, D.T, out=ws.empty("C", (Xb.shape[0], n_atoms), dtype, device))
        G = torch.mm(D, D.T, out=ws.empty("G", (n_atoms, n_atoms), dtype, device))
        if self.update == "ksvd":
            out = omp(C, G, torch.linalg.vector_norm(Xb, dim=1), self.n_nonzero,
                      nonneg=self.nonneg, rel_tol=1e-10 if dtype == torch.float64 else 1e-5)
            Z = scipy.sparse.csr_matrix(out.codes.cpu().double().numpy())
            return Z, int(out.n_steps.max()), 0 if out.success else Xb.shape[0]
        out = solve_lasso(C, G, self.lam, nonneg=self.nonneg, accelerate=True,
                          max_iter=self.coding_max_iter, tol=self.coding_tol, init=init,
                          scale=self.lam, workspace=ws, D=D)
        return out.csr(), int(out.n_iter.max()), int((~out.success).sum())

    def _step(self, Xb: np.ndarray, codes: np.ndarray | None = None,
              idx: np.ndarray | None = None) -> tuple[scipy.sparse.csr_matrix, dict]:
        """One coding + update step on the batch ``Xb``; warm starts from ``codes[idx]``."""
        work = Xb.shape[0] * self.n_atoms ** 2
        with thread_count(self._threads, work=work, small_work=CODING_SMALL_WORK,
                          device=self._device), self._workspace.session():
            return self._step_inner(Xb, codes, idx)

    def _warm_start(self, codes: np.ndarray, idx: np.ndarray) -> torch.Tensor:
        if codes.dtype == torch.empty(0, dtype=self._dtype).numpy().dtype:
            init = self._workspace.empty("init", (idx.size, codes.shape[1]), self._dtype)
            np.take(codes, idx, axis=0, out=init.numpy())
        else:
            init = torch.as_tensor(codes[idx], dtype=self._dtype)
        return init.to(self._device)

    def _step_inner(self, Xb, codes, idx):
        start = time.perf_counter()
        nb = Xb.shape[0]
        ws = self._workspace
        Xt = ws.copy("X", Xb, self._dtype).to(self._device)
        Dt = ws.copy("D", self._D, self._dtype).to(self._device)
        init_t = None if codes is None else self._warm_start(codes, idx)
        # Codes are mostly exact zeros: sparse products for the statistics.
        Zs, iters, unconverged = self._code(Xt, Dt, init_t)
        R = Xb - Zs @ self._D
        objective = objective_from_parts(np.einsum("ij,ij->", R, R),
                                         np.abs(Zs.data).sum(), self.lam) / nb

        self.n_steps_ += 1
        self.n_iter_ = t = self.n_steps_
        if self.update == "ksvd":
            self._D, Z = ksvd_update(self._D, Xb, Zs.toarray(), nonneg=self.nonneg)
            Zs = scipy.sparse.csr_matrix(Z)
        else:
            beta = (1.0 - 1.0 / t) ** self.forget_rate
            self._A *= beta
            self._A += (Zs.T @ Zs / nb).toarray()
            self._B *= beta
            self._B += Zs.T @ Xb / nb
            if self.update == "bcd":
                # Statistics accumulate in float64; a sweep reads them in float32.
                f32 = (a.astype(np.float32) for a in (self._D, self._A, self._B))
                self._D = bcd_update(*f32).astype(np.float64)
            else:
                self._D = mod_update(self._D, self._A, self._B)

        self.n_samples_seen_ += nb
        used = np.zeros(self.n_atoms, dtype=bool)
        used[Zs.indices] = True
        self._last_used[used] = self.n_samples_seen_
        resampled = self._resample(Xb, Zs) if self.resample_dead else 0
        self._clock += time.perf_counter() - start
        self.components_ = self._D.astype(np.float32)
        record = {"step": t, "samples": self.n_samples_seen_, "time": self._clock,
                  "objective": objective, "coding_iters": iters, "unconverged": unconverged,
                  "resampled": resampled}
        if self.callback is not None and t % self.callback_every == 0:
            extra = self.callback(self)
            if extra:
                record.update({str(k): float(v) for k, v in extra.items()})
        self.history_.append(record)
        return Zs, record

    def _resample(self, Xb: np.ndarray, Z) -> int:
        unused = self.n_samples_seen_ - self._last_used >= self._dead_after
        if self.replace_duplicates is not None:
            unused |= _duplicate_atoms(self._D, ~unused, self.replace_duplicates)
        dead = np.flatnonzero(unused)
        if dead.size == 0:
            return 0
        R = Xb - Z @ self._D
        err = np.einsum("ij,ij->i", R, R)
        order = np.argsort(-err, kind="stable")[: dead.size]
        order = order[err[order] > 0]
        if order.size == 0:
            return 0
        # With fewer bad samples than dead atoms, the rest wait for a later batch.
        dead = dead[: order.size]
        new = R[order] / np.sqrt(err[order])[:, None]
        self._D[dead] = new
        self._A[dead, :] = 0.0
        self._A[:, dead] = 0.0
        self._B[dead] = 0.0
        self._last_used[dead] = self.n_samples_seen_
        return int(dead.size)

    # ------------------------------------------------------------------ API
    def fit(self, X, y=None) -> DictionaryLearner:
        """Learn from scratch: ``max_epochs`` shuffled passes of mini-batches over X (n, d).
        ``y`` is ignored."""
        self._check_params()
        X = self._check_X(X, reset=True)
        self._reset(X)
        n = X.shape[0]
        bs = min(self.batch_size, n)
        n_batches = -(-n // bs)
        # Warm starts from the previous epoch's codes, when they fit in memory.
        keep_codes = self.update != "ksvd" and self.max_epochs > 1 and \
            n * self.n_atoms <= MAX_WARM_ENTRIES
        codes = np.zeros((n, self.n_atoms), dtype=np.float32) if keep_codes else None
        bar = tqdm(total=self.max_epochs * n_batches, disable=not self.progress,
                   desc=f"dictlearn[{self.update}]", unit="step")
        for _ in range(self.max_epochs):
            perm = self._rng.permutation(n)
            for b in range(n_batches):
                idx = perm[b * bs:(b + 1) * bs]
                Zs, record = self._step(X[idx], codes, idx)
                if codes is not None:
                    self._store_codes(codes, idx, Zs, record["resampled"])
                bar.update(1)
                bar.set_postfix(objective=f"{record['objective']:.4g}", refresh=False)
        bar.close()
        return self

    def _store_codes(self, codes: np.ndarray, idx: np.ndarray, Zs, resampled: int) -> None:
        """Keep the batch's codes as the next epoch's warm starts (scattered from CSR)."""
        codes[idx] = 0.0
        codes[np.repeat(idx, np.diff(Zs.indptr)), Zs.indices] = Zs.data
        if resampled > 0:
            # Codes of re-initialised atoms belong to the old atom: drop them.
            used = np.zeros(self.n_atoms, dtype=bool)
            used[Zs.indices[Zs.data != 0]] = True
            fresh = self._last_used == self.n_samples_seen_
            codes[:, fresh & ~used] = 0.0

    def partial_fit(self, X, y=None) -> DictionaryLearner:
        """One step on the mini-batch X (n, d); the first call initialises from X.
        ``y`` is ignored."""
        self._check_params()
        first = not hasattr(self, "components_")
        X = self._check_X(X, reset=first)
        if first:
            self._reset(X)
        self._step(X)
        return self

    def transform(self, X, *, tol: float | None = None) -> np.ndarray:
        """Codes (n, n_atoms) of X on the learned dictionary (FISTA; OMP for ksvd), in the
        learner's dtype."""
        check_is_fitted(self, "components_")
        X = self._check_X(X, reset=False)
        kw = dict(nonneg=self.nonneg, device=self._device, dtype=self._dtype,
                  threads=self._threads, workspace=self._workspace)
        if self.update == "ksvd":
            res = sparse_code(X, self._D, self.lam, method="omp", n_nonzero=self.n_nonzero,
                              **kw)
        else:
            res = sparse_code(X, self._D, self.lam, tol=tol, **kw)
        return res.codes

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            name = "float64" if resolve_dtype(self.dtype) == torch.float64 else "float32"
        except ValueError:
            name = "float32"
        tags.transformer_tags.preserves_dtype = [name]
        return tags
