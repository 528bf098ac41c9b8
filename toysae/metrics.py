"""Scores of a learned dictionary against the truth, and of codes and reconstructions.

Dictionaries are ``(n_atoms, d)`` arrays, one atom per row (numpy or torch);
rows need not be unit norm, cosines normalise them. Results are Python floats
or numpy arrays, computed in float64. Complex input is refused (TypeError), so
are empty arrays (ValueError: no samples, no rows or no columns); rows are
normalised before anything is squared and reconstructions are rescaled by
their largest entry, so entries near 1e300 or 1e-300 neither overflow nor
underflow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.optimize import linear_sum_assignment

from toysae._validation import (
    check_choice,
    check_float,
    check_indices,
    check_int,
    check_seed,
    row_norms,
    to_numpy,
)

__all__ = ["HedgingDegree", "absorption_rate", "best_matching_features", "cosine_matrix",
           "dead_latents", "detection_scores", "explained_variance", "fvu", "hedging_degree",
           "l0", "matched_cosines", "max_cosines", "mcc", "mmcs", "mmcs_with_larger",
           "pairwise_mcc", "shrinkage", "uniqueness"]


def _rows(A, name: str) -> np.ndarray:
    A = to_numpy(A, name, ndim=2)
    if A.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    if A.shape[1] == 0:
        raise ValueError(f"{name} has no columns (its rows are 0-dimensional)")
    norms = row_norms(A)
    if (norms == 0).any():
        raise ValueError(f"{name} has {int((norms == 0).sum())} zero row(s); cosines are undefined")
    return A / norms[:, None]


def _pair(reference, learned, names=("reference atoms", "learned atoms")
          ) -> tuple[np.ndarray, np.ndarray]:
    """Both as unit rows of one dimension; errors say ``names``."""
    R = _rows(reference, names[0].split()[0])
    L = _rows(learned, names[1].split()[0])
    if R.shape[1] != L.shape[1]:
        raise ValueError(f"{names[0]} have dimension {R.shape[1]} but {names[1]} have "
                         f"{L.shape[1]}; they must match")
    return R, L


def cosine_matrix(A, B) -> np.ndarray:
    """(n_A, n_B) cosine similarities between the rows of ``A`` and of ``B``."""
    A, B = _pair(A, B)
    return np.clip(A @ B.T, -1.0, 1.0)


def max_cosines(reference, learned, *, absolute: bool = False) -> np.ndarray:
    """(n_reference,) for each reference row, its largest cosine with a learned row.

    With ``absolute=True`` the cosine's absolute value is used, so an atom and
    its negation count as the same direction (signed dictionaries).
    """
    C = cosine_matrix(reference, learned)
    return (np.abs(C) if absolute else C).max(axis=1)


def mmcs(reference, learned, *, absolute: bool = False) -> float:
    """Mean max cosine similarity from ``reference`` to ``learned``.

    ``mmcs(true_features, dictionary)`` is how well the truth is recovered;
    ``mmcs(dictionary, true_features)`` is how many learned atoms are real.
    1 means every reference row has an exact match; random directions in
    ``d`` dimensions score about ``sqrt(2 log n_learned / d)``.
    """
    return float(max_cosines(reference, learned, absolute=absolute).mean())


MCC_OVER = ("reference", "smaller")


def _matching(reference, learned, absolute: bool):
    """The cosines (absolute or signed) and the Hungarian assignment maximising their sum."""
    if not isinstance(absolute, bool):
        raise TypeError(f"absolute must be a bool, got {absolute!r}")
    C = cosine_matrix(reference, learned)
    if absolute:
        C = np.abs(C)
    rows, cols = linear_sum_assignment(C, maximize=True)
    return C, rows, cols


def mcc(reference, learned, *, over: str = "reference", absolute: bool = True) -> float:
    """Mean |cosine| under the best one-to-one matching of learned atoms to reference rows.

    The matching is the Hungarian assignment (scipy ``linear_sum_assignment``)
    maximising the total |cosine|; it pairs ``min(n_reference, n_learned)`` rows.
    The sum of the matched |cosines| is divided by

    - ``over="reference"`` (the default): ``n_reference``, so reference rows left
      unmatched (fewer learned atoms than reference rows) count as 0. Hence
      ``mcc <= mmcs(..., absolute=True)``, with equality when the best matches are
      all different atoms; ``mcc(features, sae.dictionary)`` measures how much of
      the truth a dictionary recovers, and a narrow one (width = n_features / 4)
      scores at most 1/4;
    - ``over="smaller"``: the number of matched pairs, ``min(n_reference,
      n_learned)``: the mean over the smaller set, SynthSAEBench's MCC (SAELens
      ``sae_lens.synthetic.mean_correlation_coefficient``). This is the number to
      set beside SynthSAEBench's published MCC; it is symmetric in its arguments
      and equals the default when ``n_learned >= n_reference``.

    ``absolute=False`` matches and averages the signed cosines instead, so an atom
    and its negation are opposite directions (a match can then be negative).
    """
    over = check_choice(over, "over", MCC_OVER)
    C, rows, cols = _matching(reference, learned, absolute)
    return float(C[rows, cols].sum() / (C.shape[0] if over == "reference" else len(rows)))


def matched_cosines(reference, learned, *, absolute: bool = True) -> np.ndarray:
    """(n_reference,) each reference row's |cosine| with the learned atom that :func:`mcc`'s
    one-to-one matching pairs it with; 0 for a row left unmatched (fewer learned atoms
    than reference rows). ``matched_cosines(A, B).mean()`` is ``mcc(A, B)``, up to the
    order of the sum; ``absolute=False`` gives the signed cosines of the signed matching.
    ``matched_cosines(A, B) >= 0.9`` marks the rows of ``A`` that ``B`` has too."""
    C, rows, cols = _matching(reference, learned, absolute)
    out = np.zeros(C.shape[0])
    out[rows] = C[rows, cols]
    return out


def _dictionaries(dictionaries, minimum: int) -> list[np.ndarray]:
    """Unit-row float64 arrays of one dimension, at least ``minimum`` of them; errors name
    ``dictionaries`` (the sequence) or ``dictionaries[k]`` (one of them)."""
    if isinstance(dictionaries, (str, bytes)) or not isinstance(dictionaries, Sequence):
        raise TypeError(f"dictionaries must be a sequence of arrays, got "
                        f"{type(dictionaries).__name__}")
    if len(dictionaries) < minimum:
        raise ValueError(f"dictionaries must hold at least {minimum}, got "
                         f"{len(dictionaries)}")
    Ds = [_rows(D, f"dictionaries[{k}]") for k, D in enumerate(dictionaries)]
    for k in range(1, len(Ds)):
        if Ds[k].shape[1] != Ds[0].shape[1]:
            raise ValueError(f"dictionaries[{k}] has dimension {Ds[k].shape[1]} but "
                             f"dictionaries[0] has {Ds[0].shape[1]}")
    return Ds


def pairwise_mcc(dictionaries: Sequence, *, absolute: bool = True) -> float:
    """PW-MCC: the mean over every pair of ``dictionaries`` of the pair's MCC.

    ``dictionaries`` are at least two ``(n_atoms, d)`` arrays of one ``d`` (learned
    with different seeds, say); the MCC of a pair is ``mcc(A, B, over="smaller")``:
    the Hungarian one-to-one matching of their atoms by |cosine|, the matched
    |cosines| averaged over the smaller dictionary (over every atom when the sizes
    agree, the usual case), so it is symmetric and needs no ground truth. This is
    Song et al.'s pairwise dictionary mean correlation coefficient (arXiv
    2505.20254): absolute cosines, as the MCC of identifiability work, so an atom
    and its negation count as the same direction. ``absolute=False`` matches and
    averages signed cosines (as Paulo & Belrose, arXiv 2501.16615, match latents
    with cost ``1 - cos``), where a negated atom is a different latent.

    1 when every dictionary is a permutation (and, with ``absolute``, sign flips)
    of the others; about 0 for dictionaries in orthogonal subspaces.
    """
    if not isinstance(absolute, bool):
        raise TypeError(f"absolute must be a bool, got {absolute!r}")
    Ds = _dictionaries(dictionaries, 2)
    return float(np.mean([mcc(Ds[i], Ds[j], over="smaller", absolute=absolute)
                          for i in range(len(Ds)) for j in range(i + 1, len(Ds))]))


def mmcs_with_larger(dictionaries: Sequence) -> list[float | None]:
    """For each dictionary, the mean over every larger one of MMCS(this -> larger).

    ``dictionaries`` are ordered by number of atoms (non-decreasing), e.g. the
    dictionaries learned at one sparsity penalty with growing width. No ground
    truth is needed: atoms that reappear in larger dictionaries are likely real
    ("many ways of being wrong, one way of being right"). The largest dictionary
    has nothing larger to compare with and gets ``None``.
    """
    Ds = _dictionaries(dictionaries, 1)
    for k in range(1, len(Ds)):
        if Ds[k].shape[0] < Ds[k - 1].shape[0]:
            raise ValueError(f"dictionaries must be ordered by size; dictionaries[{k}] has "
                             f"{Ds[k].shape[0]} atoms after {Ds[k - 1].shape[0]}")
    out: list[float | None] = []
    for k, D in enumerate(Ds):
        larger = Ds[k + 1:]
        out.append(float(np.mean([(D @ L.T).max(axis=1).mean() for L in larger]))
                   if larger else None)
    return out


def _codes(codes) -> np.ndarray:
    C = to_numpy(codes, "codes", ndim=2)
    if C.shape[0] == 0:  # no sample: every latent would look dead, l0 would be NaN
        raise ValueError("codes has no samples (shape (0, n_atoms)); L0 and dead latents "
                         "need at least one")
    if C.shape[1] == 0:
        raise ValueError("codes has no latents (shape (n_samples, 0))")
    return C


def dead_latents(codes) -> np.ndarray:
    """(n_atoms,) bool mask of latents that are zero on every sample of ``codes``.

    ``codes`` is (n_samples, n_atoms) (an SAE's: (n_samples, width)), with at
    least one sample; ``dead_latents(codes).sum()`` counts them.
    """
    return ~(_codes(codes) != 0).any(axis=0)


def l0(codes) -> float:
    """Mean number of nonzero latents per sample."""
    return float((_codes(codes) != 0).sum(axis=1).mean())


def _recon(x, x_hat) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 (n_samples, d); divided by their largest absolute entry when it
    is beyond 1e100 or below 1e-100 (the metrics below are ratios, so the common
    scale cancels and squares cannot overflow or underflow; data in between is
    left as it is, bit for bit)."""
    x = to_numpy(x, "x", ndim=2)
    x_hat = to_numpy(x_hat, "x_hat", ndim=2)
    if x.shape != x_hat.shape:
        raise ValueError(f"x has shape {x.shape} but x_hat has shape {x_hat.shape}")
    if x.shape[0] == 0:
        raise ValueError("x has no samples (shape (0, d))")
    if x.shape[1] == 0:
        raise ValueError("x has no columns (shape (n_samples, 0))")
    scale = max(np.abs(x).max(), np.abs(x_hat).max())
    if scale > 0 and not 1e-100 <= scale <= 1e100:
        return x / scale, x_hat / scale
    return x, x_hat


def fvu(x, x_hat) -> float:
    """Fraction of variance unexplained: ``sum ||x - x_hat||^2 / sum ||x - mean(x)||^2``."""
    x, x_hat = _recon(x, x_hat)
    total = ((x - x.mean(axis=0)) ** 2).sum()
    if total == 0:
        raise ValueError("x has zero variance; the fraction of variance unexplained is undefined")
    return float(((x - x_hat) ** 2).sum() / total)


def shrinkage(x, x_hat) -> float:
    """Mean of ``||x_hat_n|| / ||x_n||`` over samples with ``x_n != 0``.

    Below 1 means the reconstruction is shrunk toward zero (the L1 penalty's
    bias); 1 is no shrinkage.
    """
    x, x_hat = _recon(x, x_hat)
    norms = row_norms(x)
    keep = norms > 0
    if not keep.any():
        raise ValueError("every row of x is zero; shrinkage is undefined")
    return float((row_norms(x_hat[keep]) / norms[keep]).mean())


def explained_variance(x, x_hat) -> float:
    """Explained variance relative to the mean: ``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2``.

    Sums run over samples and coordinates, ``mean(x)`` is the per-coordinate
    mean over samples; so it is ``1 - fvu(x, x_hat)``: 1 for a perfect
    reconstruction, 0 for predicting the mean, negative for worse than that.
    """
    return 1.0 - fvu(x, x_hat)


# -- latents as detectors of the true features ----------------------------------
def _truth(features, dictionary) -> tuple[np.ndarray, np.ndarray]:
    return _pair(features, dictionary, ("features", "dictionary atoms"))


def _best_matches(F: np.ndarray, L: np.ndarray, absolute: bool) -> np.ndarray:
    if not isinstance(absolute, bool):
        raise TypeError(f"absolute must be a bool, got {absolute!r}")
    C = L @ F.T
    return np.argmax(np.abs(C) if absolute else C, axis=1)


def best_matching_features(features, dictionary, *, absolute: bool = False) -> np.ndarray:
    """(width,) int: for each latent (row of ``dictionary``), the true feature (row of
    ``features``) of largest SIGNED decoder cosine; ties go to the lower index.

    Signed, because an SAE latent fires with a positive code: a latent whose
    atom is a feature's negation does not detect that feature. Every latent is
    matched (many latents may match one feature; drop dead latents first if
    they should not count). ``absolute=True`` matches by the largest |cosine|
    instead, as SynthSAEBench does (SAELens ``sae_lens/synthetic/evals.py``).
    """
    F, L = _truth(features, dictionary)
    return _best_matches(F, L, absolute)


def _codes_pair(codes, true_codes, n_latents: int, n_features: int):
    C = to_numpy(codes, "codes", ndim=2)
    T = to_numpy(true_codes, "true_codes", ndim=2)
    if C.shape[0] != T.shape[0]:
        raise ValueError(f"codes has {C.shape[0]} samples but true_codes has {T.shape[0]}")
    if C.shape[0] == 0:
        raise ValueError("codes has no samples")
    if C.shape[1] != n_latents:
        raise ValueError(f"codes has {C.shape[1]} latents but dictionary has {n_latents} rows")
    if T.shape[1] != n_features:
        raise ValueError(f"true_codes has {T.shape[1]} features but features has "
                         f"{n_features} rows")
    return C > 0, T > 0


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def detection_scores(codes, true_codes, features, dictionary, *, absolute: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of each latent as a detector of its best-matching feature.

    codes : (n_samples, width) an SAE's codes; latent ``j`` FIRES on sample
        ``n`` when ``codes[n, j] > 0``.
    true_codes : (n_samples, n_features) the true coefficients; feature ``i``
        IS PRESENT on sample ``n`` when ``true_codes[n, i] > 0``.
    features, dictionary : (n_features, d) true features and (width, d)
        decoder atoms; latent ``j`` is scored against ``m(j) =
        best_matching_features(features, dictionary)[j]`` (largest signed
        decoder cosine, many-to-one).

    With ``TP_j = #{n : latent j fires and m(j) is present}``::

        precision_j = TP_j / #{n : latent j fires}
        recall_j    = TP_j / #{n : m(j) is present}
        F1_j        = 2 precision_j recall_j / (precision_j + recall_j)

    each 0 where its denominator is 0 (a latent that never fires, a feature
    never present). Returns three (width,) float64 arrays.

    ``absolute=True`` matches each latent by |cosine| (``best_matching_features``),
    as SynthSAEBench does; then ``f1.mean()``, ``precision.mean()`` and
    ``recall.mean()`` are its F1, precision and recall (SAELens
    ``ClassificationMetricsCalculator``) for codes that are never negative (SAELens
    counts a latent as firing where its code is nonzero).
    """
    F, L = _truth(features, dictionary)
    fires, present = _codes_pair(codes, true_codes, L.shape[0], F.shape[0])
    match = _best_matches(F, L, absolute)
    target = present[:, match]
    tp = (fires & target).sum(axis=0)
    precision = _ratio(tp, fires.sum(axis=0))
    recall = _ratio(tp, target.sum(axis=0))
    f1 = _ratio(2 * precision * recall, precision + recall)
    return precision, recall, f1


def uniqueness(features, dictionary, *, absolute: bool = False) -> float:
    """Distinct best-matched features per latent: ``#{m(j)} / width``.

    Each latent ``j`` is matched to its best feature ``m(j)``
    (``best_matching_features``: largest signed decoder cosine), and the
    number of distinct features so matched is divided by the number of
    latents, as in SynthSAEBench's uniqueness (SAELens ``sae_lens/synthetic``).
    1 when every latent tracks a different feature; ``1 / width`` when all
    of them track the same one; latents that duplicate or split a feature
    lower it. A narrow SAE (``width < n_features``) can still reach 1.
    SynthSAEBench matches by |cosine|: ``absolute=True`` gives its number.
    """
    F, L = _truth(features, dictionary)
    return float(np.unique(_best_matches(F, L, absolute)).size / L.shape[0])


def absorption_rate(codes, true_codes, features, dictionary, hierarchy, *,
                    min_cosine: float = 0.3) -> np.ndarray:
    """Per parent feature, the share of its samples on which a child's latent absorbs it.

    hierarchy : ``((parent, child), ...)`` pairs of feature indices (as
        ``SyntheticConfig.hierarchy_pairs``); or an (n_pairs, 2) int array.
    Latents are matched to FEATURES here (the other way from
    :func:`detection_scores`): ``ell(i)`` is the latent whose decoder atom has
    the largest signed cosine with feature ``i`` (ties: lower index). A child
    latent CARRIES the parent's direction when ``cos(atom_ell(c), f_p) >=
    min_cosine`` (default 0.3; a latent that absorbed a parent orthogonal to
    its child, atom ``(f_p + f_c)/sqrt(2)``, has cosine 0.71).

    For parent ``p`` (parents in ascending order, ``np.unique`` of the first
    column), sample ``n`` is ABSORBED when the parent is present
    (``true_codes[n, p] > 0``), its latent is silent (``codes[n, ell(p)] ==
    0``, i.e. not > 0) and, for some child ``c`` of ``p`` with ``ell(c) !=
    ell(p)``, the latent ``ell(c)`` fires and carries ``f_p``. The rate is
    #absorbed / #{n : parent present}; NaN for a parent never present.
    Returns (n_parents,) float64; ``np.unique(hierarchy[:, 0])`` are the parents.
    """
    F, L = _truth(features, dictionary)
    fires, present = _codes_pair(codes, true_codes, L.shape[0], F.shape[0])
    pairs = _hierarchy(hierarchy, F.shape[0])
    min_cosine = check_float(min_cosine, "min_cosine", minimum=-1.0, maximum=1.0)
    C = L @ F.T  # (width, n_features)
    ell = np.argmax(C, axis=0)  # (n_features,) latent matched to each feature
    parents = np.unique(pairs[:, 0])
    rates = np.empty(len(parents))
    for k, p in enumerate(parents):
        on = present[:, p]
        absorbing = np.zeros(len(on), dtype=bool)
        for c in pairs[pairs[:, 0] == p, 1]:
            j = ell[c]
            if j != ell[p] and C[j, p] >= min_cosine:
                absorbing |= fires[:, j]
        events = on & ~fires[:, ell[p]] & absorbing
        rates[k] = events.sum() / on.sum() if on.any() else np.nan
    return rates


def _hierarchy(hierarchy, n_features: int) -> np.ndarray:
    pairs = check_indices(hierarchy, "hierarchy", n_features, pairs=True)
    if pairs.size == 0:
        raise ValueError("hierarchy has no (parent, child) pairs")
    if (pairs[:, 0] == pairs[:, 1]).any():
        raise ValueError("hierarchy has a feature that is its own child")
    return pairs


# -- feature hedging between a control SAE and an extended one ---------------------------
@dataclass(frozen=True)
class HedgingDegree:
    """What :func:`hedging_degree` measured (numbers in the decoders' units, ratios free of
    them).

    degree : ``max(0, (proj_portion - baseline_portion) / (1 - baseline_portion))``: 0 when
        the original latents moved no more into the new latents' span than into random
        spans of the same size, 1 when they moved by their whole norm and entirely into it.
    proj_portion : ``mean_i ||P delta_i|| / mean_i ||control_i||``, ``P`` the orthogonal
        projector onto the span of the added rows.
    baseline_portion, baseline_std : the same portion with the added rows replaced by
        Gaussian random rows: its mean over the ``n_baselines`` draws and its standard
        deviation (ddof 1).
    delta_norm : ``mean_i ||delta_i||``, how far the original latents moved at all.
    n_new : the added rows.
    """

    degree: float
    proj_portion: float
    baseline_portion: float
    baseline_std: float
    delta_norm: float
    n_new: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _span_basis(V: np.ndarray) -> np.ndarray:
    """(d, rank) orthonormal columns spanning the rows of ``V`` (k, d). Column-pivoted QR
    puts the independent rows first, so the first ``rank`` columns of Q span all of them
    even when an early row depends on the others; the rank counts R's diagonal entries
    above numpy's ``matrix_rank`` tolerance."""
    if not V.any():
        return np.zeros((V.shape[1], 0))
    Q, R, _ = scipy.linalg.qr(V.T, mode="economic", pivoting=True)
    diagonal = np.abs(np.diag(R))
    rank = int((diagonal > diagonal[0] * max(V.shape) * np.finfo(np.float64).eps).sum())
    return Q[:, :rank]


def _projected_norm(delta: np.ndarray, V: np.ndarray) -> float:
    """``mean_i ||P delta_i||``, P the projector onto the row span of ``V``."""
    return float(np.linalg.norm(delta @ _span_basis(V), axis=1).mean())


def hedging_degree(control_decoder, extended_decoder, *, n_baselines: int = 50,
                   seed: int = 0) -> HedgingDegree:
    """The hedging degree of Chanin, Dulka & Garriga-Alonso (2025, "Feature Hedging:
    Correlated Features Break Narrow Sparse Autoencoders", arXiv 2505.11756), as in the
    authors' code (chanind/feature-hedging-paper, ``hedging_paper/evals/hedging_eval.py``).

    An SAE of ``W`` latents is trained, then trained on twice for the same samples: as it
    is (the *control*) and with ``n_new`` fresh latents added after its own (the
    *extended* SAE). Where the narrow SAE's latents hedged, merging parts of features it
    had no latent for, the added latents take those parts over and the original latents
    move towards them: ``delta_i = extended_i - control_i`` lies in the span of the added
    rows. The degree is how much more of the deltas lies in that span than in random
    spans of the same size (``HedgingDegree`` gives the formula).

    control_decoder : (W, d) the control SAE's decoder rows.
    extended_decoder : (W + n_new, d) the extended SAE's, its original latents first and
        the ``n_new >= 1`` added ones after them, ``n_new < d`` (random rows of as many
        as ``d`` span the whole space, and the degree is undefined).
    Both in the same units, with the decoder norms folded into the codes (a toysae SAE's
    ``sae.dictionary``: unit rows); rows are not normalised here, so a latent's move is
    measured as the decoders give it.
    n_baselines : random draws of the baseline, at least 2. The k-th draw's rows are the
        k-th ``(n_new, d)`` block drawn in turn by
        ``numpy.random.default_rng(seed).standard_normal``.

    The span of the added rows is rank-aware (column-pivoted QR; the authors keep the
    first ``rank`` columns of an unpivoted QR, the same span whenever the first ``rank``
    added rows are independent). A ``baseline_portion >= 1`` (the originals moved by more
    than their own norms, far into random spans) leaves the degree undefined: ValueError.
    """
    C = to_numpy(control_decoder, "control_decoder", ndim=2)
    E = to_numpy(extended_decoder, "extended_decoder", ndim=2)
    width, d = C.shape
    if width == 0 or d == 0:
        raise ValueError(f"control_decoder must have rows and columns, got shape {C.shape}")
    if E.shape[1] != d:
        raise ValueError(f"extended_decoder must have d = {d} columns (control_decoder's), "
                         f"got shape {E.shape}")
    n_new = E.shape[0] - width
    if n_new < 1:
        raise ValueError(f"extended_decoder must have more rows than control_decoder "
                         f"({width}): its original latents, then at least one added, got "
                         f"shape {E.shape}")
    if n_new >= d:
        raise ValueError(f"extended_decoder adds {n_new} rows in d = {d}: as many random "
                         "rows span the whole space, so the degree is undefined; add "
                         f"fewer than {d}")
    n_baselines = check_int(n_baselines, "n_baselines", minimum=2)
    rng = np.random.default_rng(check_seed(seed))
    # a common scale cancels from every ratio: dividing out an extreme one (as _recon does)
    # keeps the squares finite and leaves ordinary decoders bit for bit as they are
    scale = max(np.abs(C).max(), np.abs(E).max())
    if scale == 0 or not C.any():
        raise ValueError("control_decoder has only zero rows: the portions are undefined")
    if not 1e-100 <= scale <= 1e100:
        C, E = C / scale, E / scale
    else:
        scale = 1.0
    delta = E[:width] - C
    control_norm = float(row_norms(C).mean())
    portion = _projected_norm(delta, E[width:]) / control_norm
    baselines = np.array([_projected_norm(delta, rng.standard_normal((n_new, d)))
                          for _ in range(n_baselines)]) / control_norm
    baseline = float(baselines.mean())
    if baseline >= 1:
        raise ValueError(f"the random baseline's portion is {baseline:.3g} >= 1: the "
                         "original latents moved by more than their own norms (mean "
                         f"||delta|| / mean ||control|| = "
                         f"{row_norms(delta).mean() / control_norm:.3g}), and the degree "
                         "is undefined")
    degree = max(0.0, (portion - baseline) / (1 - baseline))
    return HedgingDegree(degree=float(degree), proj_portion=portion,
                         baseline_portion=baseline,
                         baseline_std=float(baselines.std(ddof=1)),
                         delta_norm=float(row_norms(delta).mean() * scale), n_new=int(n_new))
