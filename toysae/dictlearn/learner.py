"""``DictionaryLearner``: alternate sparse coding and a dictionary update, sklearn style.

Each step codes a mini-batch with the current dictionary (batched FISTA on the
lasso objective of DESIGN.md, or OMP for K-SVD) and then updates the
dictionary with the chosen rule (see :mod:`toysae.dictlearn.updates`):

- ``"bcd"``: Mairal et al.'s online method: accumulate ``A = sum z z^T`` and
  ``B = sum z^T x`` with a forgetting factor and do block coordinate descent;
- ``"mod"``: least squares on the same accumulated statistics, renormalised
  (full-batch MOD when ``batch_size >= n_samples`` and ``forget_rate`` is large);
- ``"ksvd"``: K-SVD on each mini-batch, codes by OMP with ``n_nonzero`` atoms.

Atoms that no sample has used for ``dead_after`` samples are re-initialised
from the worst-reconstructed samples of the current batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse
import torch
from tqdm.auto import tqdm

from toysae._buffers import host_empty
from toysae._threads import single_thread_if_small
from toysae._validation import check_choice, check_float, check_int, to_numpy
from toysae.dictlearn._fista import solve_lasso
from toysae.dictlearn._omp import omp
from toysae.dictlearn.history import History
from toysae.dictlearn.sparse_coding import SMALL_WORK, sparse_code
from toysae.dictlearn.updates import bcd_update, ksvd_update, mod_update

UPDATES = ("bcd", "mod", "ksvd")
_MAX_WARM_ENTRIES = 20_000_000


class DictionaryLearner:
    """Learn a dictionary ``D`` (n_atoms, d) with unit rows minimising

    ``1/2 sum_n ||x_n - z_n D||^2 + lam sum_n ||z_n||_1`` (``Z >= 0`` if nonneg).

    Parameters
    ----------
    n_atoms : number of atoms (rows of the dictionary).
    lam : L1 penalty (``>= 0``) of the coding step (fista) and of the objective
        recorded in ``history``.
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
        ``history["unconverged"]``. Above 96 atoms each code is also refit
        exactly on its support, so a loose rule (0.3, 50) loses little and is
        about twice as fast; below, codes are as accurate as the rule.
    dead_after : an atom unused for this many consecutive samples is
        re-initialised (default ``max(20 * n_atoms, 4 * batch_size)``).
    resample_dead : turn re-initialisation off with False.
    init : "data" (random samples of X, normalised; default), "random"
        (Gaussian directions) or an (n_atoms, d) array.
    seed : seeds the initialisation, the batch order and resampling.
    device, dtype : torch device and dtype of the coding step.
    progress : show a tqdm progress bar in :meth:`fit`.
    callback : ``callback(learner) -> dict | None`` called every
        ``callback_every`` steps; returned numbers are added to ``history``
        (e.g. MMCS against a known truth). Its time is not counted in
        ``history["time"]``.

    Attributes
    ----------
    dictionary : (n_atoms, d) float32 numpy array, unit rows.
    history : :class:`History` with one record per step (``step``,
        ``samples``, ``time`` (cumulative seconds), ``objective`` (per-sample
        objective of the batch before the update), ``coding_iters``,
        ``unconverged``, ``resampled``) plus the callback's keys.
    """

    def __init__(self, n_atoms: int, lam: float, *, update: str = "bcd", nonneg: bool = True,
                 batch_size: int = 256, max_epochs: int = 10, n_nonzero: int | None = None,
                 forget_rate: float = 3.0, coding_tol: float = 1e-2, coding_max_iter: int = 200,
                 dead_after: int | None = None, resample_dead: bool = True, init="data",
                 seed: int = 0, device=None, dtype: torch.dtype = torch.float32,
                 progress: bool = True, callback: Callable | None = None,
                 callback_every: int = 1):
        self.n_atoms = check_int(n_atoms, "n_atoms", minimum=1)
        self.lam = check_float(lam, "lam", minimum=0.0)
        self.update = check_choice(update, "update", UPDATES)
        for name, flag in (("nonneg", nonneg), ("resample_dead", resample_dead),
                           ("progress", progress)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        self.nonneg = nonneg
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.max_epochs = check_int(max_epochs, "max_epochs", minimum=1)
        if update == "ksvd":
            if n_nonzero is None:
                raise ValueError("n_nonzero is required with update='ksvd' (OMP sparsity)")
            n_nonzero = check_int(n_nonzero, "n_nonzero", minimum=1, maximum=self.n_atoms)
        elif n_nonzero is not None:
            raise ValueError(f"n_nonzero is only used with update='ksvd', got {n_nonzero!r}")
        if update != "ksvd" and self.lam == 0:
            raise ValueError("lam must be > 0 for update='bcd'/'mod' (lam=0 codes are "
                             "not sparse and the lasso has no unique solution)")
        self.n_nonzero = n_nonzero
        self.forget_rate = check_float(forget_rate, "forget_rate", minimum=0.0)
        self.coding_tol = check_float(coding_tol, "coding_tol", minimum=0.0,
                                      min_inclusive=False)
        self.coding_max_iter = check_int(coding_max_iter, "coding_max_iter", minimum=1)
        if dead_after is None:
            dead_after = max(20 * self.n_atoms, 4 * self.batch_size)
        self.dead_after = check_int(dead_after, "dead_after", minimum=1)
        self.resample_dead = resample_dead
        if isinstance(init, str):
            check_choice(init, "init", ("data", "random"))
            self.init = init
        else:
            init = to_numpy(init, "init", ndim=2)
            if init.shape[0] != self.n_atoms:
                raise ValueError(f"init must have {self.n_atoms} rows (n_atoms), "
                                 f"got shape {init.shape}")
            if (np.linalg.norm(init, axis=1) == 0).any():
                raise ValueError("init has a zero row; every atom needs a direction")
            self.init = init
        self.seed = check_int(seed, "seed", minimum=0)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        self.callback = callback
        self.callback_every = check_int(callback_every, "callback_every", minimum=1)
        self.progress = progress
        self._D: np.ndarray | None = None

    # ------------------------------------------------------------------ state
    @property
    def dictionary(self) -> np.ndarray:
        """The (n_atoms, d) dictionary, unit rows, float32 copy."""
        if self._D is None:
            raise ValueError("the learner is not fitted yet: call fit or partial_fit first")
        return self._D.astype(np.float32)

    def _reset(self, X: np.ndarray) -> None:
        self._rng = np.random.default_rng(self.seed)
        d = X.shape[1]
        if isinstance(self.init, np.ndarray):
            if self.init.shape[1] != d:
                raise ValueError(f"init has {self.init.shape[1]} columns but X has {d}")
            D = self.init.copy()
        elif self.init == "data":
            replace = X.shape[0] < self.n_atoms
            D = X[self._rng.choice(X.shape[0], self.n_atoms, replace=replace)].copy()
            # Repeated or zero samples would give equal or undefined atoms: jitter them.
            D += 1e-3 * np.linalg.norm(D, axis=1, keepdims=True).mean() * \
                self._rng.standard_normal(D.shape)
            D[np.linalg.norm(D, axis=1) == 0] = self._rng.standard_normal(d)
        else:
            D = self._rng.standard_normal((self.n_atoms, d))
        self._D = D / np.linalg.norm(D, axis=1, keepdims=True)
        self._A = np.zeros((self.n_atoms, self.n_atoms))
        self._B = np.zeros((self.n_atoms, d))
        self._last_used = np.zeros(self.n_atoms, dtype=np.int64)
        self.n_steps_ = 0
        self.n_samples_seen_ = 0
        self._clock = 0.0
        self.history = History()

    def _check_X(self, X, name: str = "X") -> np.ndarray:
        X = to_numpy(X, name, ndim=2)
        if X.shape[0] == 0:
            raise ValueError(f"{name} must have at least one sample, got shape {X.shape}")
        if self._D is not None and X.shape[1] != self._D.shape[1]:
            raise ValueError(f"{name} has {X.shape[1]} columns but the dictionary has "
                             f"{self._D.shape[1]}; they must match")
        return X

    # ------------------------------------------------------------------ steps
    def _code(self, Xb: torch.Tensor, D: torch.Tensor, init: torch.Tensor | None):
        """Codes of the batch as a scipy CSR matrix (float64), iterations, unconverged."""
        C = torch.mm(Xb, D.T, out=host_empty((Xb.shape[0], self.n_atoms), self.dtype, self.device))
        G = torch.mm(D, D.T, out=host_empty((self.n_atoms, self.n_atoms), self.dtype, self.device))
        if self.update == "ksvd":
            out = omp(C, G, torch.linalg.vector_norm(Xb, dim=1), self.n_nonzero,
                      nonneg=self.nonneg,
                      rel_tol=1e-10 if self.dtype == torch.float64 else 1e-5)
            Z = scipy.sparse.csr_matrix(out.codes.cpu().double().numpy())
            return Z, int(out.n_steps.max()), 0 if out.nnls_converged else Xb.shape[0]
        out = solve_lasso(C, G, self.lam, nonneg=self.nonneg, accelerate=True,
                          max_iter=self.coding_max_iter, tol=self.coding_tol, init=init,
                          scale=self.lam)
        if out.sets is None:
            Z = scipy.sparse.csr_matrix(out.codes.cpu().double().numpy())
        else:  # straight from the solver's index sets, without scanning dense codes
            S, values = (t.cpu().numpy() for t in out.sets)
            nonzero = values != 0
            indptr = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))])
            Z = scipy.sparse.csr_matrix(
                (values[nonzero].astype(np.float64), S[nonzero], indptr),
                shape=(Xb.shape[0], self.n_atoms))
        return Z, int(out.n_iter.max()), int((~out.converged).sum())

    def _step(self, Xb: np.ndarray, init: np.ndarray | None = None) -> scipy.sparse.csr_matrix:
        with single_thread_if_small(Xb.shape[0] * self.n_atoms**2, SMALL_WORK, self.device):
            return self._step_inner(Xb, init)

    def _step_inner(self, Xb: np.ndarray, init: np.ndarray | None) -> scipy.sparse.csr_matrix:
        start = time.perf_counter()
        nb = Xb.shape[0]
        Xt = torch.as_tensor(Xb, dtype=self.dtype, device=self.device)
        Dt = torch.as_tensor(self._D, dtype=self.dtype, device=self.device)
        init_t = None if init is None else torch.as_tensor(init, dtype=self.dtype,
                                                           device=self.device)
        # Codes are mostly exact zeros: sparse products for the statistics.
        Zs, iters, unconverged = self._code(Xt, Dt, init_t)
        R = Xb - Zs @ self._D
        objective = (0.5 * np.einsum("ij,ij->", R, R) + self.lam * np.abs(Zs.data).sum()) / nb

        self.n_steps_ += 1
        t = self.n_steps_
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
        record = {"step": t, "samples": self.n_samples_seen_, "time": self._clock,
                  "objective": objective, "coding_iters": iters, "unconverged": unconverged,
                  "resampled": resampled}
        if self.callback is not None and t % self.callback_every == 0:
            extra = self.callback(self)
            if extra:
                record.update({str(k): float(v) for k, v in extra.items()})
        self.history.append(record)
        return Zs

    def _resample(self, Xb: np.ndarray, Z) -> int:
        dead = np.flatnonzero(self.n_samples_seen_ - self._last_used >= self.dead_after)
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
    def fit(self, X) -> DictionaryLearner:
        """Learn from scratch: ``max_epochs`` shuffled passes of mini-batches over X (n, d)."""
        X = to_numpy(X, "X", ndim=2)
        if X.shape[0] == 0:
            raise ValueError(f"X must have at least one sample, got shape {X.shape}")
        self._D = None
        self._reset(X)
        n = X.shape[0]
        bs = min(self.batch_size, n)
        n_batches = -(-n // bs)
        # Warm starts from the previous epoch's codes, when they fit in memory.
        keep_codes = self.update != "ksvd" and self.max_epochs > 1 and \
            n * self.n_atoms <= _MAX_WARM_ENTRIES
        codes = np.zeros((n, self.n_atoms), dtype=np.float32) if keep_codes else None
        bar = tqdm(total=self.max_epochs * n_batches, disable=not self.progress,
                   desc=f"dictlearn[{self.update}]", unit="step")
        for _ in range(self.max_epochs):
            perm = self._rng.permutation(n)
            for b in range(n_batches):
                idx = perm[b * bs:(b + 1) * bs]
                warm = None if codes is None else codes[idx]
                Zs = self._step(X[idx], warm)
                if codes is not None:
                    Z = Zs.toarray()
                    codes[idx] = Z
                    # Codes of re-initialised atoms belong to the old atom: drop them.
                    fresh = self._last_used == self.n_samples_seen_
                    if self.history["resampled"][-1] > 0:
                        codes[:, fresh & ~(Z != 0).any(axis=0)] = 0.0
                bar.update(1)
                bar.set_postfix(objective=f"{self.history['objective'][-1]:.4g}", refresh=False)
        bar.close()
        return self

    def partial_fit(self, X) -> DictionaryLearner:
        """One step on the mini-batch X (n, d); the first call initialises from X."""
        X = self._check_X(X)
        if self._D is None:
            self._reset(X)
        self._step(X)
        return self

    def transform(self, X, *, tol: float | None = None) -> np.ndarray:
        """Codes (n, n_atoms) of X on the learned dictionary (FISTA; OMP for ksvd)."""
        X = self._check_X(X)
        if self._D is None:
            raise ValueError("the learner is not fitted yet: call fit or partial_fit first")
        if self.update == "ksvd":
            res = sparse_code(X, self._D, self.lam, method="omp", n_nonzero=self.n_nonzero,
                              nonneg=self.nonneg, device=self.device, dtype=self.dtype)
        else:
            res = sparse_code(X, self._D, self.lam, nonneg=self.nonneg, tol=tol,
                              device=self.device, dtype=self.dtype)
        return res.codes

    def fit_transform(self, X) -> np.ndarray:
        return self.fit(X).transform(X)

    def __repr__(self) -> str:
        return (f"DictionaryLearner(n_atoms={self.n_atoms}, lam={self.lam}, "
                f"update={self.update!r}, nonneg={self.nonneg}, batch_size={self.batch_size})")
