"""Build notebooks/01_synthetic_data.ipynb (its cells;
notebooks/execute.py runs it and stores it with its outputs)."""

from pathlib import Path

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# 01 · A tour of the synthetic-data generator\n\n"
        "`toysae.data` makes activations whose true features are known: `x = codes @ features`.\n"
        "Feature *i* fires with probability `p_i ∝ decay**i` (summing to `mean_active`), and\n"
        "correlated firing is a per-sample Gaussian copula. `N` below sets the sample size; the\n"
        "test suite runs this notebook with a small one."),
    nbf.v4.new_code_cell(
        "import os\n"
        "import numpy as np\n"
        "import matplotlib.pyplot as plt\n"
        "from toysae.data import SyntheticConfig, SyntheticData\n"
        "from toysae import metrics\n"
        "N = int(os.environ.get('TOYSAE_NOTEBOOK_N', 100_000))"),
    nbf.v4.new_markdown_cell("## The reference toy: 256-d, 512 features, 5 active on average"),
    nbf.v4.new_code_cell(
        "data = SyntheticData(SyntheticConfig())\n"
        "batch = data.sample(N)\n"
        "print(data.config)\n"
        "print('x', batch.x.shape, 'codes', batch.codes.shape)\n"
        "active = (batch.codes != 0).sum(1)\n"
        "print('mean active:', active.mean(), 'expected', data.probabilities.sum())"),
    nbf.v4.new_code_cell(
        "fig, ax = plt.subplots(figsize=(5, 3.5))\n"
        "ax.semilogy((batch.codes != 0).mean(0), '.', ms=3, label='measured')\n"
        "ax.semilogy(data.probabilities, 'r-', label='expected $p_i$')\n"
        "ax.set(xlabel='feature index', ylabel='firing rate', title='Firing rate per feature')\n"
        "ax.legend();"),
    nbf.v4.new_markdown_cell(
        "## Correlation\n\nA low-rank copula gives visible co-firing; the co-firing correlation "
        "follows the copula's sign."),
    nbf.v4.new_code_cell(
        "lr = SyntheticData(SyntheticConfig(correlation='low_rank', correlation_rank=3,\n"
        "                                   correlation_strength=0.9))\n"
        "fire = (lr.sample(N).codes[:, :20] != 0).astype(float)\n"
        "R = np.corrcoef(fire.T)\n"
        "C = lr.correlation[:20, :20]\n"
        "iu = np.triu_indices(20, 1)\n"
        "print('corr(copula C, co-firing):', np.corrcoef(C[iu], R[iu])[0, 1].round(3))"),
    nbf.v4.new_markdown_cell(
        "## Structure: hierarchy and mutually exclusive groups\n\n"
        "A child fires only with its parent; at most one member of an exclusive group fires."),
    nbf.v4.new_code_cell(
        "cfg = SyntheticConfig(d=16, n_features=8, mean_active=2, decay=1.0,\n"
        "                      hierarchy=((0, 1),), exclusive_groups=((4, 5, 6),))\n"
        "on = SyntheticData(cfg).sample(N).codes != 0\n"
        "print('child without parent:', int((on[:, 1] & ~on[:, 0]).sum()))\n"
        "print('max active in the group:', on[:, [4, 5, 6]].sum(1).max())"),
    nbf.v4.new_markdown_cell(
        "## Scoring a dictionary against the truth\n\n"
        "A noisy copy of the true features scores below 1; PCA's directions score low."),
    nbf.v4.new_code_cell(
        "F = data.features\n"
        "noisy = F + 0.3 * np.random.default_rng(0).standard_normal(F.shape) / 16\n"
        "X = batch.x[:20_000] - batch.x[:20_000].mean(0)\n"
        "_, _, Vt = np.linalg.svd(X, full_matrices=False)\n"
        "print('MMCS noisy copy:', round(metrics.mmcs(F, noisy), 3))\n"
        "print('MCC  noisy copy:', round(metrics.mcc(F, noisy), 3))\n"
        "print('MMCS PCA (abs): ', round(metrics.mmcs(F, Vt, absolute=True), 3))"),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbf.write(nb, Path(__file__).with_name("01_synthetic_data.ipynb"))
