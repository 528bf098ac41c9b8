"""``check_sae_files``: the checks of :func:`toysae.theory.check_sae` for an SAE file on
activation files too large for memory (docs/theory.md, "Checking an SAE on files").

The SAE file is read by ``toysae.interop.load_sae_with_info`` and the activation
files by ``toysae.check._activations``; the checks are theory's own streaming
pieces (the sums of ``theory.support``, the plan and the chunked pass of
``theory.report``).

Two passes over the activations, each a block at a time:

1. per batch: the encoder's codes and the float64 re-solve of the optimal codes
   for the SAE's own (unit-row) dictionary; the amortisation sums and the encoder's
   code KKT conditions; the residual moments ``R = Z^T r``, residual sums, code
   masses and counts and the nested supports of the optimal codes. The optimal
   codes go to a temporary CSR store on disk (``toysae.check._code_store``).
2. per block, with the stored codes: the responses ``r D^T / lam`` once, for the
   code KKT conditions of the optimal codes, the hull sums of the recorded pairs,
   the hierarchy steps' verification and the hull panels of the worst pairs.

Atom stationarity and the pair identity need only the sums of pass 1, exactly;
every number equals the in-memory ``check_sae`` on the same data up to rounding.
Memory is O(batch_size * width + width * d), not the file's length: per-sample
arrays (``per_sample`` maxima, ``per_sample_gap``, the codes, the steps' rows)
are left out of the report.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from toysae._buffers import Workspace
from toysae._result import Result
from toysae._threads import check_threads, torch_threads
from toysae._validation import check_float, check_int
from toysae.check._activations import Activations
from toysae.check._code_store import CodeStore
from toysae.interop import load_sae_with_info
from toysae.theory.pairs import MAX_PAIRS, HullSampler, check_pair_mode
from toysae.theory.problem import Problem
from toysae.theory.report import OptimalityReport, Tolerances, plan_checks, run_checks
from toysae.theory.sae import (
    AmortisationReport,
    AmortisationSums,
    code_batch,
    sae_message,
    unit_sae_dictionary,
)
from toysae.theory.support import NestingTracker, SampleSums

#: Responses kept per hull panel (the panel's hull and mean use every sample).
PANEL_POINTS = 2000
#: Hull panels go to the worst pairs whose first atom fires at least this often (a panel
#: of a handful of points shows little), when there are such pairs.
PANEL_MIN_SUPPORT = 50


@dataclass(repr=False)
class SAEFileReport(Result):
    """What :func:`check_sae_files` found: the SAE's amortisation gap and the optimality
    checks of its dictionary with re-solved codes, on every activation in the files.

    ``passed``: the dictionary, with optimal codes, passes every check (as
    :class:`~toysae.theory.SAEOptimalityReport`). ``lam_source`` is ``"given"`` or
    ``"recorded"`` (the SAE file's training coefficient). ``hull_samples``: the
    responses of the worst pairs (among atoms firing 50 times or more) for hull panels.
    ``seconds``: wall time of each pass.
    """

    passed: bool
    message: str
    sae_path: str
    activations_path: str
    architecture: str
    width: int
    d: int
    n_samples: int
    lam: float
    lam_source: str
    batch_size: int
    n_batches: int
    amortisation: AmortisationReport
    optimality: OptimalityReport
    hull_samples: tuple
    seconds: tuple  # (pass 1: encode and re-solve, pass 2: responses)


def choose_lam(lam, sae, info) -> tuple[float, str]:
    """``(lam, "given")``, or the L1 coefficient the SAE file records, ``(coef, "recorded")``;
    a ValueError naming ``lam`` when neither exists."""
    if lam is not None:
        return check_float(lam, "lam", minimum=0.0, min_inclusive=False), "given"
    kind = getattr(sae, "penalty_kind", None)
    if info.sparsity_coef is None:
        raise ValueError(f"lam: {info.path} records no training coefficient; pass lam "
                         "(the L1 weight of the checks, per sample; --lam on the command line)")
    if kind != "l1":
        raise ValueError(f"lam: the {info.architecture} SAE in {info.path} records a "
                         f"coefficient of its {kind} penalty, not an L1 weight; pass lam "
                         "(--lam on the command line)")
    if info.sparsity_coef <= 0:
        raise ValueError(f"lam: {info.path} records sparsity_coef={info.sparsity_coef}, which "
                         "is no L1 weight to check against; pass lam (--lam)")
    return float(info.sparsity_coef), "recorded"


def check_sae_files(sae_path: str | os.PathLike, activations_path: str | os.PathLike, *,
                    lam: float | None = None, batch_size: int = 4096, nonneg: bool = True,
                    decoder_bias: bool | None = None, tolerances: Tolerances | None = None,
                    pairs="auto", normalize: bool = False, tol: float = 1e-9,
                    max_iter: int = 20000, max_steps: int = 200, max_pairs: int = MAX_PAIRS,
                    n_panels: int = 4, threads: int | None = None, progress: bool = True,
                    tmp_dir: str | os.PathLike | None = None) -> SAEFileReport:
    """Check the SAE in ``sae_path`` on the activations in ``activations_path``, in batches.

    Parameters
    ----------
    sae_path : a toysae checkpoint file (``toysae.sae.checkpoint.save``).
    activations_path : a ``.npy`` file, a ``.safetensors`` file with one tensor, or a
        directory of such shards (sorted by name); shape ``(..., d)``, floating point.
    lam : the L1 weight of the checks, per sample; default: the coefficient the SAE
        file records for an L1-penalised architecture (else a ValueError asks for it).
    batch_size : samples encoded and re-solved at a time (memory ~ batch_size * width).
    nonneg, decoder_bias, tolerances, pairs, normalize, tol, max_iter, max_steps,
    max_pairs : as in :func:`toysae.theory.check_sae` (pairs: all of them up to
        1,024 latents, the candidate pairs above).
    n_panels : hull panels kept, for the worst pairs whose first atom fires on at least
        50 samples.
    threads : torch threads for encoding and re-solving (None: the caller's count).
    progress : show tqdm progress bars for the two passes.
    tmp_dir : where the temporary store of re-solved codes goes (None: the system's).
    """
    tolerances = Tolerances() if tolerances is None else tolerances
    if not isinstance(tolerances, Tolerances):
        raise TypeError(f"tolerances must be a Tolerances, got {type(tolerances).__name__}")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    max_pairs = check_int(max_pairs, "max_pairs", minimum=1)
    n_panels = check_int(n_panels, "n_panels", minimum=0)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    tol = check_float(tol, "tol", minimum=0.0, min_inclusive=False)
    threads = check_threads(threads)
    pairs = check_pair_mode(pairs)
    for name, value in (("nonneg", nonneg), ("normalize", normalize), ("progress", progress)):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {value!r}")
    if decoder_bias is not None and not isinstance(decoder_bias, (bool, np.bool_)):
        raise TypeError(f"decoder_bias must be a bool or None, got {decoder_bias!r}")
    X = Activations(activations_path)
    sae, info = load_sae_with_info(sae_path)
    lam, lam_source = choose_lam(lam, sae, info)
    dic = unit_sae_dictionary(sae, normalize=bool(normalize), unit_atol=tolerances.unit_norm)
    width, d = dic.D.shape
    if X.d != d:
        raise ValueError(f"activations in {X.path} have d = {X.d} but the SAE in {sae_path} "
                         f"reads d = {d}")
    decoder_bias = dic.trained_bias if decoder_bias is None else bool(decoder_bias)
    nonneg = bool(nonneg)

    n = X.n_samples
    amort = AmortisationSums(n, dic, lam, nonneg=nonneg, code_tol=tolerances.code, tol=tol,
                             keep_codes=False, keep_per_sample=False)
    sums, tracker = SampleSums(width, d), NestingTracker(width)
    workspace = Workspace()
    bar = dict(total=n, unit="sample", unit_scale=True, disable=not progress, leave=False)
    with CodeStore(n, width, tmp_dir) as store:
        start_time = time.perf_counter()
        probe = Problem(X=X, D=dic.D, Z=store, lam=lam, nonneg=nonneg, bias=dic.bias,
                        max_rows=batch_size)
        threads_cm = nullcontext() if threads is None else torch_threads(threads)
        with tqdm(desc="toysae check: encode and re-solve", **bar) as pbar, threads_cm:
            for start in range(0, n, batch_size):
                xb = X.read(start, start + batch_size)
                Z_sae, sol = code_batch(sae, xb, dic, lam, nonneg=nonneg, tol=tol,
                                        max_iter=max_iter, workspace=workspace)
                Zo, R = amort.add(start, xb, Z_sae, sol)
                sums.add(Zo, R)
                tracker.add(Zo)
                store.append(Zo)
                pbar.update(len(xb))
        store.finish()
        first_pass = time.perf_counter() - start_time
        amortisation = amort.result()
        plan = plan_checks(probe, sums, tracker, decoder_bias=decoder_bias,
                           tolerances=tolerances, pairs=pairs, max_steps=max_steps,
                           n_worst=10, max_pairs=max_pairs, streamed=True)
        sampler = HullSampler(
            np.zeros((0, 2), dtype=np.int64) if plan.pairs is None
            else plan.pairs.panel_pairs(probe, sums.count, n_panels, PANEL_MIN_SUPPORT),
            PANEL_POINTS)
        start_time = time.perf_counter()
        with tqdm(desc="toysae check: responses", **bar) as pbar:
            report = run_checks(plan, extra=[sampler],
                                on_chunk=lambda c: pbar.update(c.stop - c.start))
        second_pass = time.perf_counter() - start_time
    samples = () if report.pairs is None else sampler.result(report.pairs, sums.count)
    head = (f"toysae check: {info.architecture} SAE ({width} latents, d = {d}) from "
            f"{sae_path} on {n} activations from {X.path}; lam = {lam:g} "
            f"({'given' if lam_source == 'given' else 'recorded in the SAE file'})")
    verdict = (f"verdict: the decoder {'is' if report.passed else 'is not'} a stationary point "
               f"of dictionary learning at this lam ({_failed(report)}); the encoder "
               f"{'is' if amortisation.passed else 'is not'} an exact sparse coder for it "
               f"(relative amortisation gap {amortisation.relative_gap:.3g})")
    message = "\n".join([head, verdict, sae_message(amortisation, report)])
    return SAEFileReport(
        passed=report.passed, message=message, sae_path=str(sae_path),
        activations_path=str(X.path), architecture=info.architecture, width=width, d=d,
        n_samples=n, lam=lam, lam_source=lam_source, batch_size=batch_size,
        n_batches=amort.n_batches, amortisation=amortisation,
        optimality=report, hull_samples=samples, seconds=(first_pass, second_pass))


def _failed(report: OptimalityReport) -> str:
    parts = [("code KKT", report.code), ("atom stationarity", report.atoms),
             ("pair identity", report.pairs), ("hierarchy", report.hierarchy),
             ("decoder bias", report.bias)]
    parts = [(name, part) for name, part in parts if part is not None]
    failed = [name for name, part in parts if not part.passed]
    return f"all {len(parts)} checks pass" if not failed else f"fails {', '.join(failed)}"
