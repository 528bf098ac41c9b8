"""Metrics of an SAE spliced into a host toy model (arrays and modules in, floats out).

- :func:`splice_metrics`: on a batch of host samples, the downstream loss
  increase (CE increase for the residual toy: CE(patched) - CE(original)
  against labels drawn from the teacher), the output divergence (KL for the
  residual toy, a weighted squared distance for the TMS host), L0, the
  number of alive latents (fired at least once on the batch; the batch size is
  stated in the result) and the FVU at the site;
- :func:`ground_truth_split`: MMCS, MCC and the recovered fraction (best
  cosine >= 0.9) of a dictionary against the functional and the nuisance
  features separately;
- :func:`mlp_feature_proxy`: the *proxy* ground truth at ``mlp_post``, where
  no exact one exists: each feature's image through the MLP. Every figure that
  scores against it says "proxy".

This module sits at the metrics layer, beside ``toysae.metrics`` whose scores it
applies, not in ``toysae.models``: the models layer is below metrics and must not
import it.
"""

from __future__ import annotations

import numpy as np
import torch

from toysae import metrics
from toysae._validation import check_float, check_indices, row_norms, to_numpy
from toysae.models.base import HostBatch, HostModel
from toysae.models.residual import ResidualToy

RECOVERED_COS = 0.9


def splice_metrics(host: HostModel, sae, site: str, batch: HostBatch) -> dict[str, float]:
    """Downstream loss increase, divergence, L0, alive latents and FVU of ``sae`` at ``site``.

    ``ce_increase`` is the increase of ``host.downstream_loss`` (cross-entropy
    for the residual toy, the importance-weighted reconstruction for TMS);
    ``host.divergence`` is under the key ``host.divergence_name`` (``kl``:
    KL(p_original || p_patched) for the residual toy; ``weighted_sq_distance``
    for TMS). ``alive`` counts latents that fired at least once on the
    ``n_eval`` samples of the batch.
    """
    run = host.run_spliced(batch.inputs, site, sae)
    with torch.no_grad():
        codes = sae.encode(run[site])
        original = float(host.downstream_loss(run["output"], batch.targets))
        patched = float(host.downstream_loss(run["patched/output"], batch.targets))
        divergence = float(host.divergence(run["output"], run["patched/output"]))
        x_hat = sae(run[site]).x_hat
    codes_np = codes.numpy()
    return {"ce_original": original, "ce_patched": patched, "ce_increase": patched - original,
            host.divergence_name: divergence, "l0": metrics.l0(codes_np),
            "alive": int((~metrics.dead_latents(codes_np)).sum()),
            "n_eval": int(codes_np.shape[0]),
            "fvu": metrics.fvu(run[site].numpy(), x_hat.numpy())}


def recovered_fraction(features, dictionary, threshold: float = RECOVERED_COS) -> float:
    """Share of the true features whose best cosine with an atom is >= ``threshold``.
    A zero row (a feature the proxy cannot place, a zero atom) has cosine 0 with
    everything."""
    F = to_numpy(features, "features", ndim=2)
    D = to_numpy(dictionary, "dictionary", ndim=2)
    threshold = check_float(threshold, "threshold", minimum=-1.0, maximum=1.0)
    for name, A in (("features", F), ("dictionary", D)):
        if A.shape[0] == 0:
            raise ValueError(f"{name} has no rows")
    if F.shape[1] != D.shape[1]:
        raise ValueError(f"features have dimension {F.shape[1]} but dictionary atoms have "
                         f"{D.shape[1]}; they must match")
    Fn, Dn = (A / np.where(n > 0, n, 1.0)[:, None] for A, n in
              ((F, row_norms(F)), (D, row_norms(D))))
    return float(((Fn @ Dn.T).max(axis=1) >= threshold).mean())


def ground_truth_split(features, dictionary, functional, nuisance) -> dict[str, float]:
    """MMCS / MCC / recovered fraction against ``features[functional]`` and
    ``features[nuisance]`` separately (keys ``functional_mmcs``, ``nuisance_mcc``, ...)."""
    F = to_numpy(features, "features", ndim=2)
    out = {}
    for name, idx in (("functional", functional), ("nuisance", nuisance)):
        idx = check_indices(idx, name, F.shape[0])
        if idx.size == 0:
            raise ValueError(f"{name} must name at least one feature")
        part = F[idx]
        out[f"{name}_mmcs"] = metrics.mmcs(part, dictionary)
        out[f"{name}_mcc"] = metrics.mcc(part, dictionary)
        out[f"{name}_recovered"] = recovered_fraction(part, dictionary)
    return out


def mlp_feature_proxy(host: ResidualToy, magnitude: float = 0.5) -> np.ndarray:
    """(n_features, hidden) PROXY directions at ``mlp_post``: feature ``i``'s image
    ``ReLU(m d_i W_in + b_in) - ReLU(b_in)`` (``m`` a typical active magnitude),
    normalised; a feature the MLP ignores gets a zero row. A proxy, not a truth:
    the MLP mixes features that fire together."""
    if not isinstance(host, ResidualToy):
        raise TypeError(f"host must be a ResidualToy, got {type(host).__name__}")
    host.check_trained()
    magnitude = check_float(magnitude, "magnitude", minimum=0.0, min_inclusive=False)
    F = torch.from_numpy(host.data.features).float()
    with torch.no_grad():
        image = torch.relu(magnitude * F @ host.W_in + host.b_in) - torch.relu(host.b_in)
    norms = image.norm(dim=1, keepdim=True)
    return torch.where(norms > 1e-9, image / norms.clamp_min(1e-12), 0.0).numpy()
