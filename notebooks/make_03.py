"""Build notebooks/03_classical_dictionary_learning.ipynb.

Run: .venv/bin/python notebooks/make_03.py
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell("""# 03 · Classical dictionary learning

The problem SAEs approximate: find a dictionary `D` (n_atoms × d, unit rows) and codes
`Z >= 0` minimising

`L(D, Z) = 1/2 Σ_n ||x_n − z_n D||² + λ Σ_n ||z_n||_1`  (docs/design.md; in code
`toysae.dictionary_objective.dictionary_objective`).

This notebook (1) solves the coding step exactly and fast (FISTA against the cvxpy reference),
(2) learns dictionaries with the three update rules, and (3) compares them with PCA / ICA / k-means.
Sizes are small by default; set `TOYSAE_NOTEBOOK_SAMPLES` for a bigger run."""),
    new_code_cell("""import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from toysae.data import SyntheticConfig, SyntheticData
from toysae.dictlearn import (DictionaryLearner, ica_dictionary, kmeans_dictionary,
                              pca_dictionary, sparse_code)
from toysae.metrics import mmcs
from toysae.plotting import style

style()
torch.set_num_threads(1)  # small solves: one thread (see toysae/_threads.py)
N = int(os.environ.get("TOYSAE_NOTEBOOK_SAMPLES", "6000"))"""),
    new_markdown_cell("""## 1. Sparse coding for a fixed dictionary

On a small random problem, FISTA (float32, KKT-gap stopping rule) against the exact cvxpy solve
(one DPP-parameterised problem re-solved per sample)."""),
    new_code_cell("""rng = np.random.default_rng(0)
D = rng.standard_normal((48, 16)); D /= np.linalg.norm(D, axis=1, keepdims=True)
Z_true = (rng.random((40, 48)) < 0.08) * rng.uniform(0.5, 1.5, (40, 48))
X = Z_true @ D + 0.02 * rng.standard_normal((40, 16))

ref = sparse_code(X, D, 0.1, method="cvxpy", dtype=torch.float64)
fista = sparse_code(X, D, 0.1)
print(fista)  # a SparseCodeResult: codes, objective, success, n_iter, kkt_gap, method, message
rel = abs(fista.objective - ref.objective) / ref.objective
same_support = np.array_equal(np.abs(fista.codes) > 1e-3, np.abs(ref.codes) > 1e-3)
print(f"relative objective gap to cvxpy: {rel:.1e}; same support (|z| > 1e-3): {same_support}")
print("FISTA matches cvxpy:", rel < 1e-4 and same_support)"""),
    new_markdown_cell("""## 2. Learning a dictionary on the 3-D toy

Six features on the sphere in 3-D. Each update rule alternates coding and a dictionary update:
online block coordinate descent (Mairal et al. 2010), MOD and K-SVD (OMP codes).
`DictionaryLearner` is a scikit-learn estimator: `fit` / `transform` / `get_params`, the learned
dictionary in `components_` (also `.dictionary`), one row per step in `history_`."""),
    new_code_cell("""data = SyntheticData(SyntheticConfig.toy_3d())
X3 = data.sample(N, seed=1).x
truth = data.features
learners = {
    "bcd": DictionaryLearner(6, 0.05, update="bcd", batch_size=256, max_epochs=3, progress=False),
    "mod": DictionaryLearner(6, 0.05, update="mod", batch_size=256, max_epochs=3, progress=False),
    "ksvd": DictionaryLearner(6, 0.05, update="ksvd", n_nonzero=2, batch_size=256, max_epochs=3,
                              progress=False),
}
fig, ax = plt.subplots(figsize=(6, 3.5))
scores = {}
for name, est in learners.items():
    est.set_params(callback=lambda l: {"mmcs": mmcs(truth, l.dictionary)})
    est.fit(X3)
    scores[name] = est.history_["mmcs"][-1]
    ax.plot(est.history_["samples"], est.history_["objective"],
            label=f"{name} (MMCS {scores[name]:.3f})")
ax.set_xlabel("training samples seen")
ax.set_ylabel("objective per sample (batch, before update)")
ax.set_title("3-D toy: learning curves of the three update rules")
ax.legend()
plt.show()
print({k: round(v, 3) for k, v in scores.items()})"""),
    new_markdown_cell("""## 3. Against the baselines, with optimal codes

Every dictionary is scored the same way: MMCS to the truth, and the objective with optimal codes
(FISTA) at the common λ. PCA and ICA give at most d = 3 directions."""),
    new_code_cell("""dicts = {name: est.dictionary for name, est in learners.items()}
dicts["pca"] = pca_dictionary(X3, 3)
dicts["ica"] = ica_dictionary(X3, 3, seed=0)
dicts["kmeans"] = kmeans_dictionary(X3, 6, seed=0)
lam = 0.05
rows = []
for name, Dk in dicts.items():
    obj = sparse_code(X3, Dk, lam).objective / len(X3)
    rows.append((name, Dk.shape[0], mmcs(truth, Dk), obj))
    print(f"{name:7s} atoms={Dk.shape[0]}  MMCS={mmcs(truth, Dk):.3f}  objective/sample={obj:.4f}")
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
names = [r[0] for r in rows]
axes[0].bar(names, [r[2] for r in rows]); axes[0].set_ylim(0, 1.05)
axes[0].set_ylabel("MMCS (truth → learned)"); axes[0].set_xlabel("method")
axes[0].set_title("Recovery of the six true features")
axes[1].bar(names, [r[3] for r in rows], color="tab:gray")
axes[1].set_ylabel("objective per sample"); axes[1].set_xlabel("method")
axes[1].set_title(f"Objective with optimal codes (λ = {lam})")
plt.tight_layout(); plt.show()
best_learned = min(r[3] for r in rows if r[0] in learners)
pca_objective = dict((r[0], r[3]) for r in rows)["pca"]
print("a learner beats PCA on the objective:", best_learned < pca_objective)"""),
]

kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb = new_notebook(cells=cells, metadata={"kernelspec": kernel})
path = Path(__file__).with_name("03_classical_dictionary_learning.ipynb")
nbformat.write(nb, path)
print(path)
