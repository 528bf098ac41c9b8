"""SAE vs classical dictionary learning vs baselines, scored on equal terms.

On the reference toy and the 3-D toy, fit the default ReLU SAE, each
``DictionaryLearner`` update rule (bcd, mod, ksvd) and the PCA/ICA/k-means
baselines, then score every learned dictionary the same way: MMCS in both
directions, MCC, L0, FVU, dead atoms, wall time, and the objective of docs/design.md
``1/2||x - zD||^2 + lam||z||_1`` per sample with OPTIMAL codes (FISTA) at one
common lam. L0/FVU/dead use the method's own codes for the SAE (its encoder)
and the optimal codes at lam for every other dictionary (PCA/ICA give at most
d atoms, ICA at most ``ica_max_atoms``, so their MMCS(truth -> learned) is capped).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from toysae._config import POSITIVE, Bounds, JsonMixin, OneOf, Seed, validate_fields
from toysae._io import save_figure, write_text
from toysae._threads import torch_threads
from toysae._validation import shifted_seed
from toysae.data import SyntheticConfig, SyntheticData
from toysae.dictlearn import (
    DictionaryLearner,
    ica_dictionary,
    kmeans_dictionary,
    pca_dictionary,
    sparse_code,
)
from toysae.metrics import dead_latents, fvu, l0, mcc, mmcs

NAME = "sae-vs-dictlearn"
DESCRIPTION = ("Default SAE vs dictionary learning (BCD, MOD, K-SVD) vs PCA/ICA/k-means on the "
               "reference and 3-D toys: MMCS both ways, MCC, L0, FVU, dead atoms, wall time, "
               "objective with optimal codes.")

TOYS = ("reference", "toy3d")
METHODS = ("sae", "bcd", "mod", "ksvd", "pca", "ica", "kmeans")


@dataclass(frozen=True)
class Config(JsonMixin):
    """n_train: training samples per toy; width_factor: atoms = factor x n_features
    (the SAE's width too); lam: the common penalty of the learners and of the
    objective; sae_samples: SAE training samples (None: the TrainConfig default)."""

    toys: Annotated[tuple[str, ...], OneOf(TOYS)] = TOYS
    methods: Annotated[tuple[str, ...], OneOf(METHODS)] = METHODS
    n_train: Annotated[int, Bounds(100)] = 300_000
    n_eval: Annotated[int, Bounds(100)] = 8192
    width_factor: Annotated[int, Bounds(1)] = 2
    lam: Annotated[float, POSITIVE] = 0.1
    epochs: Annotated[int, Bounds(1)] = 1
    batch_size: Annotated[int, Bounds(1)] = 1024
    sae_samples: Annotated[int | None, Bounds(1)] = None
    # PCA/ICA/k-means fit on the first this many samples
    baseline_samples: Annotated[int, Bounds(10)] = 50_000
    ica_max_iter: Annotated[int, Bounds(1)] = 400
    # FastICA cost grows with the square of the components
    ica_max_atoms: Annotated[int, Bounds(1)] = 256
    seed: Seed = 0

    def __post_init__(self):
        validate_fields(self)

    @classmethod
    def quick(cls) -> Config:
        return cls(n_train=12_288, n_eval=1024, width_factor=1, sae_samples=60_000,
                   batch_size=2048, baseline_samples=4096, ica_max_iter=100,
                   ica_max_atoms=32)


@dataclass
class MethodScore(JsonMixin):
    toy: str
    method: str
    n_atoms: int
    mmcs_true_to_learned: float
    mmcs_learned_to_true: float
    mcc: float
    l0: float
    fvu: float
    dead: int
    objective: float  # per sample, optimal codes at lam
    wall_time: float


@dataclass
class Result(JsonMixin):
    config: Config
    scores: list = field(default_factory=list)

    def table(self) -> str:
        head = ("| toy | method | atoms | MMCS true->learned | MMCS learned->true | MCC | L0 | "
                "FVU | dead | objective/sample | wall s |")
        lines = [head, "|" + "---|" * 11]
        for s in self.scores:
            lines.append(f"| {s.toy} | {s.method} | {s.n_atoms} | {s.mmcs_true_to_learned:.4f} | "
                         f"{s.mmcs_learned_to_true:.4f} | {s.mcc:.4f} | {s.l0:.2f} | "
                         f"{s.fvu:.4f} | {s.dead} | {s.objective:.5f} | {s.wall_time:.2f} |")
        return "\n".join(lines)


def _toy(name: str, seed: int) -> SyntheticConfig:
    if name == "reference":
        return SyntheticConfig(seed=seed)
    return SyntheticConfig.toy_3d(seed=seed)


def _fit(method: str, data: SyntheticData, X: np.ndarray, n_atoms: int, config: Config):
    """(dictionary, own codes function or None) for one method."""
    mean_active = data.config.mean_active
    if method == "sae":
        from toysae.sae import TrainConfig, train_sae

        tc = TrainConfig(seed=config.seed) if config.sae_samples is None else \
            TrainConfig(seed=config.seed, n_samples=config.sae_samples)
        result = train_sae("relu", data, tc, width=n_atoms, sae_kwargs={"seed": config.seed},
                           progress=False)
        sae = result.sae

        def encode(x):
            with torch.no_grad():
                out = sae(torch.as_tensor(x, dtype=torch.float32))
            return out.codes.numpy(), out.x_hat.numpy()

        return np.asarray(sae.dictionary, dtype=np.float64), encode
    if method in ("bcd", "mod", "ksvd"):
        kw = {"n_nonzero": max(1, math.ceil(2 * mean_active))} if method == "ksvd" else {}
        learner = DictionaryLearner(n_atoms, config.lam, update=method,
                                    batch_size=min(config.batch_size, X.shape[0]),
                                    max_epochs=config.epochs, seed=config.seed,
                                    progress=False, **kw)
        return learner.fit(X).dictionary.astype(np.float64), None
    X = X[:config.baseline_samples]
    n_dirs = min(n_atoms, X.shape[1])
    if method == "pca":
        return pca_dictionary(X, n_dirs).astype(np.float64), None
    if method == "ica":
        with warnings.catch_warnings():
            # Non-convergence is expected at the quick settings; the scores show its effect.
            warnings.simplefilter("ignore", RuntimeWarning)
            D = ica_dictionary(X, min(n_dirs, config.ica_max_atoms), seed=config.seed,
                               max_iter=config.ica_max_iter)
        return D.astype(np.float64), None
    return kmeans_dictionary(X, n_atoms, seed=config.seed).astype(np.float64), None


def run(config: Config) -> Result:
    result = Result(config=config)
    with torch_threads(1):
        for toy in config.toys:
            data = SyntheticData(_toy(toy, config.seed))
            X = data.sample(config.n_train, seed=shifted_seed(config.seed, 1)).x.astype(np.float64)
            held = data.sample(config.n_eval, seed=shifted_seed(config.seed, 2))
            Xe = held.x.astype(np.float64)
            truth = data.features.astype(np.float64)
            n_atoms = config.width_factor * data.config.n_features
            for method in config.methods:
                start = time.perf_counter()
                D, encode = _fit(method, data, X, n_atoms, config)
                wall = time.perf_counter() - start
                coded = sparse_code(Xe, D, config.lam, max_iter=5000)
                if encode is not None:
                    codes, x_hat = encode(Xe)
                else:
                    codes, x_hat = coded.codes, coded.codes @ D
                result.scores.append(MethodScore(
                    toy=toy, method=method, n_atoms=int(D.shape[0]),
                    mmcs_true_to_learned=mmcs(truth, D),
                    mmcs_learned_to_true=mmcs(D, truth), mcc=mcc(truth, D),
                    l0=l0(codes), fvu=fvu(Xe, x_hat), dead=int(dead_latents(codes).sum()),
                    objective=coded.objective / Xe.shape[0], wall_time=wall))
    return result


def _figure(result: Result):
    import matplotlib.pyplot as plt

    from toysae.plotting import style, wrap

    style()
    cfg = result.config
    toys = list(dict.fromkeys(s.toy for s in result.scores))
    fig, axes = plt.subplots(len(toys), 2, figsize=(9.0, 3.0 * len(toys) + 1.1), squeeze=False)
    for row, toy in enumerate(toys):
        scores = [s for s in result.scores if s.toy == toy]
        names = [s.method for s in scores]
        x = np.arange(len(names))
        ax = axes[row, 0]
        for offset, (label, key) in zip((-0.27, 0.0, 0.27), (
                ("MMCS true->learned", "mmcs_true_to_learned"),
                ("MMCS learned->true", "mmcs_learned_to_true"), ("MCC", "mcc")), strict=True):
            ax.bar(x + offset, [getattr(s, key) for s in scores], width=0.27, label=label)
        ax.set_xticks(x, names)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("cosine similarity")
        ax.set_xlabel("method")
        ax.set_title(f"{toy} toy: recovery of the true features")
        ax = axes[row, 1]
        ax.bar(x, [s.objective for s in scores], color="tab:gray")
        ax.set_xticks(x, names)
        ax.set_ylabel("objective per sample")
        ax.set_xlabel("method")
        ax.set_title(f"{toy} toy: objective, optimal codes")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(wrap(f"SAE vs dictionary learning vs PCA/ICA/k-means, "
                      f"{cfg.width_factor} x n_features atoms, {cfg.n_train:,} training samples; "
                      f"objective 1/2||x - zD||² + λ||z||₁ at λ = {cfg.lam:g} with each "
                      f"dictionary's optimal codes, on {cfg.n_eval:,} held-out samples", 95))
    fig.tight_layout(rect=(0, 0.3 / (3.0 * len(toys) + 1.1), 1, 1))
    return fig


def save(result: Result, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    paths = [write_text(out_dir / f"{NAME}.md", result.table() + "\n"),
             save_figure(_figure(result), out_dir / f"{NAME}.png")]
    return paths
