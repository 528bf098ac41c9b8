"""Build notebooks/05_end_to_end.ipynb (its cells;
notebooks/execute.py runs it and stores it with its outputs)."""

from pathlib import Path

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# 05 · SAEs inside a toy model: local vs end-to-end training\n\n"
        "A host model runs through named sites; an SAE spliced in at a site replaces the\n"
        "activation by its reconstruction, and the rest of the host runs on it. The residual\n"
        "toy's `resid_pre` is the generator's `x`, so the true features are known, and its\n"
        "teacher reads only the *functional* half of them. `local` SAEs reconstruct the site;\n"
        "`e2e` SAEs keep the host's output (KL(p_original || p_patched), Braun et al. 2024).\n"
        "`SAMPLES` sets the training length; the test suite runs this notebook small."),
    nbf.v4.new_code_cell(
        "import os\n"
        "import numpy as np\n"
        "import torch\n"
        "import matplotlib.pyplot as plt\n"
        "from toysae.experiments.e2e_pareto import interpolate_at\n"
        "from toysae.host_metrics import ground_truth_split, splice_metrics\n"
        "from toysae.models import ResidualToy, SiteObjective\n"
        "from toysae.sae import TrainConfig, train_grid\n"
        "torch.set_num_threads(1)  # toy-sized matmuls: one thread is fastest\n"
        "SAMPLES = int(os.environ.get('TOYSAE_NOTEBOOK_SAMPLES', 600_000))"),
    nbf.v4.new_markdown_cell(
        "## The host\n\n"
        "`fit()` distils the teacher into the host and freezes it; it refuses to return a\n"
        "host that explains less than 85% of the teacher's variation."),
    nbf.v4.new_code_cell(
        "host = ResidualToy()\n"
        "print(host.fit().message)\n"
        "held = host.sample(5000, seed=1)\n"
        "cache = host.forward_cache(held.inputs)\n"
        "for site in ('resid_pre', 'mlp_post'):\n"
        "    a = cache[site]\n"
        "    c = a - a.mean(0)\n"
        "    skew = ((c ** 3).mean(0) / c.pow(2).mean(0).clamp_min(1e-12) ** 1.5).median()\n"
        "    print(f'{site}: median skewness {float(skew):.2f}, '\n"
        "          f'fraction positive {float((a > 0).float().mean()):.2f}')"),
    nbf.v4.new_markdown_cell(
        "## Splicing\n\n"
        "Splicing the site's own activation changes nothing, exactly; splicing zeros (an\n"
        "ablation) costs a lot of cross-entropy against the teacher's labels."),
    nbf.v4.new_code_cell(
        "ce = host.downstream_loss(cache['output'], held.targets)\n"
        "same = host.forward_from('resid_pre', cache['resid_pre'], cache)['output']\n"
        "zero = host.forward_from('resid_pre', torch.zeros_like(held.inputs), cache)['output']\n"
        "print('perfect splice changes nothing:',\n"
        "      float(host.downstream_loss(same, held.targets) - ce) == 0.0)\n"
        "print(f'zero ablation: CE +{float(host.downstream_loss(zero, held.targets) - ce):.3f}'\n"
        "      ' nats')"),
    nbf.v4.new_markdown_cell(
        "## Three sweeps, one batched grid each\n\n"
        "Every mode trains a penalty sweep of ReLU SAEs as one batched model through the\n"
        "frozen host; each is then spliced in and scored on held-out samples."),
    nbf.v4.new_code_cell(
        "config = TrainConfig(n_samples=SAMPLES, batch_size=256, lr=3e-3, log_every=200)\n"
        "coefs = {'local': [0.02, 0.08, 0.32], 'e2e': [0.01, 0.04, 0.16],\n"
        "         'e2e_ds': [0.01, 0.04, 0.16]}\n"
        "F = host.data.features\n"
        "split = (host.config.functional_features, host.config.nuisance_features)\n"
        "scores = {}\n"
        "for mode, values in coefs.items():\n"
        "    grid = train_grid(host.data, values, [64], config, progress=False, d=32,\n"
        "                      objective=SiteObjective(host, 'resid_pre', mode))\n"
        "    rows = []\n"
        "    for m in grid.members:\n"
        "        s = splice_metrics(host, m.sae, 'resid_pre', held)\n"
        "        s.update(ground_truth_split(F, m.sae.dictionary, *split))\n"
        "        rows.append(s)\n"
        "    scores[mode] = rows\n"
        "    for coef, s in zip(values, rows):\n"
        "        print(f\"{mode:7s} coef {coef:<5g} CE +{s['ce_increase']:.3f}\"\n"
        "              f\"  L0 {s['l0']:5.1f}\"\n"
        "              f\"  functional MMCS {s['functional_mmcs']:.3f}\"\n"
        "              f\"  nuisance MMCS {s['nuisance_mmcs']:.3f}\")"),
    nbf.v4.new_markdown_cell(
        "## At matched CE increase\n\n"
        "Interpolated (log-linear in CE) where the local and e2e sweeps overlap."),
    nbf.v4.new_code_cell(
        "def curve(mode, key):\n"
        "    return (np.array([s['ce_increase'] for s in scores[mode]]),\n"
        "            np.array([s[key] for s in scores[mode]]))\n"
        "low = max(curve(m, 'l0')[0].min() for m in ('local', 'e2e'))\n"
        "high = min(curve(m, 'l0')[0].max() for m in ('local', 'e2e'))\n"
        "target = float(np.sqrt(low * high))\n"
        "l0 = {m: interpolate_at(*curve(m, 'l0'), target) for m in ('local', 'e2e')}\n"
        "print(f'at CE +{target:.3f}: L0 local {l0[\"local\"]:.1f}, e2e {l0[\"e2e\"]:.1f}')\n"
        "print('at matched CE increase e2e uses fewer active latents:', l0['e2e'] < l0['local'])\n"
        "fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))\n"
        "for mode, color in zip(coefs, ('tab:blue', 'tab:red', 'tab:green')):\n"
        "    ce, l0s = curve(mode, 'l0')\n"
        "    axes[0].plot(ce, l0s, 'o-', color=color, label=mode)\n"
        "    axes[1].plot(ce, curve(mode, 'functional_mmcs')[1], 'o-', color=color, label=mode)\n"
        "    axes[1].plot(ce, curve(mode, 'nuisance_mmcs')[1], 'x--', color=color)\n"
        "axes[0].set(xscale='log', xlabel='CE increase (nats)', ylabel='L0',\n"
        "            title='Active latents against output fidelity')\n"
        "axes[1].set(xscale='log', xlabel='CE increase (nats)', ylabel='MMCS',\n"
        "            title='Functional (solid) vs nuisance (dashed) features')\n"
        "axes[0].legend(); fig.tight_layout()"),
]

for number, cell in enumerate(cells):  # fixed ids: regenerating changes only what changed
    cell["id"] = f"cell-{number:02d}"

nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbf.write(nb, Path(__file__).with_name("05_end_to_end.ipynb"))
