"""Build notebooks/02_sae_sweep.ipynb (its cells;
notebooks/execute.py runs it and stores it with its outputs)."""

from pathlib import Path

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# 02 · A penalty x width sweep of SAEs, trained as one batched model\n\n"
        "`toysae.sae.train_grid` trains the ReLU+L1 SAE of every (L1 penalty, width) pair at\n"
        "once: the members' weights are stacked and every layer is one batched matmul. Here we\n"
        "sweep the 3-D toy of the seed write-up (6 true features in 3-D), score every SAE\n"
        "against the truth and draw the seed's four heat-maps. `STEPS` sets the training\n"
        "length; the test suite runs this notebook with a small one."),
    nbf.v4.new_code_cell(
        "import os\n"
        "import numpy as np\n"
        "import matplotlib.pyplot as plt\n"
        "import torch\n"
        "from toysae import metrics\n"
        "from toysae.data import SyntheticConfig, SyntheticData\n"
        "from toysae.plotting import heatmap, style\n"
        "from toysae.sae.grid import train_grid, train_grid_sequential\n"
        "from toysae.sae.config import TrainConfig\n"
        "style()\n"
        "STEPS = int(os.environ.get('TOYSAE_NOTEBOOK_STEPS', 2000))"),
    nbf.v4.new_markdown_cell(
        "## Train the grid\n\n"
        "Every member sees the same batches; each has its own penalty. Widths that differ a\n"
        "little are padded to the largest with masked latents (exactly zero, no gradient)."),
    nbf.v4.new_code_cell(
        "data = SyntheticData(SyntheticConfig.toy_3d())\n"
        "config = TrainConfig(n_samples=256 * STEPS, batch_size=256, lr=1e-2,\n"
        "                     log_every=max(1, STEPS // 10), resample_every=50)\n"
        "coefs, widths = [0.01, 0.05, 0.25], [6, 12, 24]\n"
        "grid = train_grid(data, coefs, widths, config, progress=False)\n"
        "grid"),
    nbf.v4.new_markdown_cell(
        "## Score every SAE on held-out samples\n\n"
        "`GridResult.array(fn)` turns any per-SAE number into a (penalties x widths) array."),
    nbf.v4.new_code_cell(
        "held_out = data.sample(5000, seed=1)\n"
        "X, F = held_out.x, data.features\n"
        "\n"
        "def outputs(member):\n"
        "    with torch.no_grad():\n"
        "        out = member.sae(X)\n"
        "    return out.x_hat.numpy(), out.codes.numpy()\n"
        "\n"
        "recon = grid.array(lambda m: ((X - outputs(m)[0]) ** 2).sum(1).mean())\n"
        "mmcs = grid.array(lambda m: metrics.mmcs(F, m.sae.dictionary))\n"
        "dead = grid.array(lambda m: metrics.dead_latents(outputs(m)[1]).sum())\n"
        "larger = np.array([metrics.mmcs_with_larger(row) for row in grid.dictionaries()],\n"
        "                  dtype=float)\n"
        "_, _, Vt = np.linalg.svd(X - X.mean(0), full_matrices=False)\n"
        "pca_mmcs = metrics.mmcs(F, Vt, absolute=True)\n"
        "print('MMCS:\\n', mmcs.round(3))\n"
        "print('PCA MMCS (|cos|):', round(pca_mmcs, 3))\n"
        "print('best SAE beats PCA:', mmcs.max() > pca_mmcs)"),
    nbf.v4.new_markdown_cell("## The four heat-maps of the seed"),
    nbf.v4.new_code_cell(
        "fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))\n"
        "common = dict(row_labels=coefs, col_labels=widths, row_title='L1 penalty',\n"
        "              col_title='dictionary size (atoms)')\n"
        "heatmap(axes[0, 0], recon, title='Reconstruction loss', fmt='{:.3g}',\n"
        "        colorbar_label='mean ||x - x̂||²', **common)\n"
        "heatmap(axes[0, 1], mmcs, title=f'MMCS with the truth (PCA {pca_mmcs:.2f})',\n"
        "        fmt='{:.3f}', colorbar_label='mean max cosine', **common)\n"
        "heatmap(axes[1, 0], larger, title='Mean MMCS with larger dictionaries', fmt='{:.3f}',\n"
        "        colorbar_label='mean max cosine', **common)\n"
        "heatmap(axes[1, 1], dead, title='Dead latents', fmt='{:.0f}', colorbar_label='latents',\n"
        "        **common)\n"
        "fig.tight_layout()"),
    nbf.v4.new_markdown_cell(
        "## Batched equals sequential\n\n"
        "The same SAEs trained one after another with `train_sae` end at the same weights, up\n"
        "to float rounding of the batched matmuls."),
    nbf.v4.new_code_cell(
        "short = TrainConfig(n_samples=256 * 100, batch_size=256, lr=1e-2, log_every=50)\n"
        "batched = train_grid(data, [0.01, 0.1], [6, 12], short, progress=False)\n"
        "sequential = train_grid_sequential(data, [0.01, 0.1], [6, 12], short, progress=False)\n"
        "gap = max(float((a.sae.W_dec - b.sae.W_dec).detach().abs().max())\n"
        "          for a, b in zip(batched.members, sequential.members))\n"
        "print(f'largest decoder difference: {gap:.1e}')\n"
        "print('same SAEs:', gap < 1e-4)\n"
        "print(f'wall time: batched {batched.wall_time:.2f}s, sequential '\n"
        "      f'{sequential.wall_time:.2f}s')"),
]

nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbf.write(nb, Path(__file__).with_name("02_sae_sweep.ipynb"))
