"""Training throughput of the SAEs against the machine's float32 matmul rate, dense and sparse.

    flock /tmp/toysae-bench.lock .venv/bin/python benchmarks/bench_sae.py [--quick]

Every figure is the best of ``--rounds`` runs, the compared runs interleaved so a
burst of load from other processes hits both alike. Each SAE is trained by the
real ``train_sae`` (default TrainConfig except batch size and sample count) on a
pre-generated pool of batches, so data generation is not timed. A step is
counted as 12 * d * width FLOPs per sample (the dense step's convention; the
hand-written dense step does 5 matmuls = 10 * d * width). The roofline is the
best float32 matmul rate measured in the same run: the five matmul shapes of a
step, and a large square product.

1. The default ReLU SAE, width 1024, on the reference toy (d=256): samples/s
   against the roofline, and the same SAE with its forward pass in plain
   autograd ops (``ReLUSAE.reference_forward``): the fused backward is kept only
   while that row shows it pays.
2. The sparsity-aware step (``toysae.sae._fused``): ReLU and TopK SAEs at width
   4096 and 16,384, batch 1024, L0 about 25 (TopK: k = 25; ReLU: encoder biases
   shifted so that about 25 latents fire per sample), on the CPU-sized
   hierarchical preset (``SyntheticConfig.synth_small()``, d=256) and at
   SynthSAEBench-16k's dimension (``synth_sae_bench()``, d=768). The runs use a
   learning rate of 1e-6 without warm-ups, so the codes keep the density they
   are timed at (a step's cost does not depend on the learning rate). Dense step
   (``step_path("dense")``) against sparse step (``step_path("sparse")``) in the
   same run. A step is timed from one batch request to the next, the median over
   the steps of a run past its first two (``timed_steps``): what a long run pays
   per step, without the run's set-up and first allocations, and robust to a
   burst of load landing on one step; "runs" is the ratio of the whole runs' wall
   times, set-up included. The effective rate is the dense step's FLOPs over the
   sparse step's time, against the roofline; "Adam" is the fused Adam step over
   the SAE's parameters alone (dense, O(width * d), part of both steps). GPU rows
   follow when CUDA is present.

Other modes, each a measurement that set a constant in ``toysae/_tuning.py``:
``--kernels`` (each product of the sparse step by every candidate method: the
kernels ``toysae.sae._sparse_kernels`` uses, and the fast top-k), ``--crossover``
(dense vs sparse step time over code densities: ``SPARSE_STEP_MAX_DENSITY``,
and over step sizes: ``SPARSE_STEP_MIN_WORK``), ``--parity`` (the README's
reference run, dense step vs automatic switching: MMCS along training, written
to ``figures/sparse-step-parity.png``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from pathlib import Path

import torch

from toysae._kernels import flat_nonzero
from toysae._tuning import TRANSPOSE_BLOCK
from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae import ReLUSAE, TopKSAE, TrainConfig, train_sae
from toysae.sae._fused import step_path, transposed_copy_
from toysae.sae._sparse_kernels import ActiveSet, _stable_argsort, batch_topk, row_topk

ROOT = Path(__file__).resolve().parent.parent


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(shapes, repeats: int, device="cpu") -> float:
    """FLOP/s of running the (m, k) @ (k, n) products in ``shapes`` back to back."""
    pairs = [(torch.randn(m, k, device=device), torch.randn(k, n, device=device),
              torch.empty(m, n, device=device)) for m, k, n in shapes]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    for a, b, out in pairs:
        torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            for a, b, out in pairs:
                torch.mm(a, b, out=out)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return flops * repeats / best


def step_shapes(B: int, d: int, width: int):
    return [(B, d, width), (B, width, d), (width, B, d), (B, d, width), (d, B, width)]


def cycle(pool, n: int):
    for i in range(n):
        yield pool[i % len(pool)]


def timed_training(sae, pool, steps: int, B: int, path: str = "auto", device="cpu",
                   log_every: int = 50, **config) -> float:
    """Seconds for ``steps`` steps of ``train_sae`` on ``sae`` (trained in place)."""
    return timed_steps(sae, pool, steps, B, path, device, log_every, **config)[0]


def timed_steps(sae, pool, steps: int, B: int, path: str = "auto", device="cpu",
                log_every: int = 50, **config) -> tuple[float, float]:
    """(seconds for ``steps`` steps of ``train_sae`` on ``sae``, trained in place; the
    median seconds of its steps past the first ``WARM_STEPS``).

    A step is timed from one batch request to the next, so the per-step figure leaves
    out the run's set-up (engine, optimizer state, the first steps' buffers) and its
    end (the last log): what a long run pays per step. The median, because a burst of
    load from other processes on this shared machine lands on single steps. With too
    few steps for that it is the whole run's mean."""
    cfg = TrainConfig(batch_size=B, n_samples=steps * B, log_every=log_every, **config)
    marks: list[float] = []

    def batches():
        for batch in cycle(pool, steps):
            sync(device)
            marks.append(time.perf_counter())
            yield batch

    with step_path(path):
        sync(device)
        start = time.perf_counter()
        train_sae(sae, batches(), cfg, progress=False)
        sync(device)
    run = time.perf_counter() - start
    # the steps between the requests of batch WARM_STEPS and the last batch
    times = [b - a for a, b in zip(marks[WARM_STEPS:-1], marks[WARM_STEPS + 1:], strict=True)]
    return run, (statistics.median(times) if len(times) >= 3 else run / steps)


WARM_STEPS = 2


class PlainAutogradReLU(ReLUSAE):
    """The ReLU SAE with autograd's own backward (the fused Function's reference)."""

    def forward(self, x):
        return self.reference_forward(x)


# -- 1. the default ReLU SAE ------------------------------------------------------------
def classic(args) -> None:
    d, width, B = 256, args.width, args.batch
    data = SyntheticData(SyntheticConfig(correlation="none"))
    pool = torch.from_numpy(data.sample(32 * B, seed=0).x).split(B)

    def run(steps, cls=ReLUSAE):
        return timed_training(cls(d, width, seed=0), pool, steps, B)

    run(20)  # warm-up: allocator, thread pool, Adam state
    seconds, plain, same_shapes, square = float("inf"), float("inf"), 0.0, 0.0
    for _ in range(args.rounds):
        seconds = min(seconds, run(args.steps))
        plain = min(plain, run(args.steps, PlainAutogradReLU))
        same_shapes = max(same_shapes, matmul_rate(step_shapes(B, d, width), repeats=10))
        square = max(square, matmul_rate([(2048, 2048, 2048)], repeats=3))
    samples_per_s = args.steps * B / seconds
    ours = samples_per_s * 12 * d * width
    roofline = max(same_shapes, square)

    print(f"ReLU SAE training, d={d}, width={width}, batch={B}, {args.steps} steps, "
          f"torch threads={torch.get_num_threads()}")
    print(f"{'quantity':44s} {'ours':>12s} {'reference':>12s} {'ratio':>7s}")
    print(f"{'training samples/s':44s} {samples_per_s:12.0f} {roofline / (12 * d * width):12.0f} "
          f"{ours / roofline:7.3f}")
    print(f"{'GFLOP/s (12*d*width per sample) vs roofline':44s} {ours / 1e9:12.1f} "
          f"{roofline / 1e9:12.1f} {ours / roofline:7.3f}")
    print(f"{'samples/s: fused backward vs plain autograd':44s} {samples_per_s:12.0f} "
          f"{args.steps * B / plain:12.0f} {plain / seconds:7.3f}")
    print(f"{'matmul GFLOP/s: step shapes vs 2048^3':44s} {same_shapes / 1e9:12.1f} "
          f"{square / 1e9:12.1f} {same_shapes / square:7.3f}")
    print(f"target: FLOP efficiency >= 0.70 of the roofline -> "
          f"{'met' if ours >= 0.7 * roofline else 'NOT met'} ({ours / roofline:.1%})")


# -- 2. the sparsity-aware step ------------------------------------------------------------
# a step's cost is the same at any learning rate; a tiny one keeps the timed density
HOLD = {"lr": 1e-6, "lr_warmup": 0.0, "sparsity_warmup": 0.0, "resample_every": 0}
PRESETS = {"synth_small": SyntheticConfig.synth_small,
           "synth_sae_bench": SyntheticConfig.synth_sae_bench}


def sae_at_l0(arch: str, d: int, width: int, l0: int, x, device):
    """A ReLU SAE whose encoder biases are shifted so that about ``l0`` latents fire on
    ``x``, or a TopK SAE with ``k = l0``."""
    if arch == "topk":
        return TopKSAE(d, width, k=l0, seed=0).to(device)
    sae = ReLUSAE(d, width, seed=0).to(device)
    with torch.no_grad():
        pre = sae.encode_pre(x)
        sample = pre.flatten()[:: max(1, pre.numel() // (1 << 22))]
        sae.b_enc.sub_(torch.quantile(sample, 1 - l0 / width))
    return sae


def adam_seconds(sae, repeats: int, device) -> float:
    """Best time of one fused Adam step over ``sae``'s parameters (gradients set)."""
    sae = copy.deepcopy(sae)
    for p in sae.parameters():
        p.grad = torch.randn_like(p)
    from toysae.sae.engine import fused_adam_options

    opt = torch.optim.Adam(sae.parameters(), lr=1e-4, **fused_adam_options())
    opt.step()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        opt.step()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def sparse_rows(args, device="cpu") -> list[dict]:
    B, l0, steps = args.batch, args.l0, args.sparse_steps
    square = 0.0
    rows = []
    for preset in ("synth_small", "synth_sae_bench"):
        data = SyntheticData(PRESETS[preset]())
        d = data.config.d
        pool = [b.to(device) for b in
                torch.from_numpy(data.sample(args.pool * B, seed=0).x).split(B)]
        for width in args.widths:
            shapes = step_shapes(B, d, width)
            for arch in ("relu", "topk"):
                base = sae_at_l0(arch, d, width, l0, pool[0], device)

                def run(sae, path, n=steps, pool=pool):
                    return timed_steps(sae, pool, n, B, path, device, **HOLD)

                run(copy.deepcopy(base), "sparse", 2)  # warm-up
                dense = sparse = dense_run = sparse_run = float("inf")
                same = 0.0
                for _ in range(args.rounds):
                    whole, step = run(copy.deepcopy(base), "dense")
                    dense, dense_run = min(dense, step), min(dense_run, whole)
                    trained = copy.deepcopy(base)
                    whole, step = run(trained, "sparse")
                    sparse, sparse_run = min(sparse, step), min(sparse_run, whole)
                    same = max(same, matmul_rate(shapes, repeats=2, device=device))
                    square = max(square, matmul_rate([(2048, 2048, 2048)], repeats=3,
                                                     device=device))
                with torch.no_grad():
                    codes = trained.encode(pool[1])
                rows.append({"preset": preset, "d": d, "width": width, "arch": arch,
                             "l0": float((codes > 0).sum(1).float().mean()),
                             "dense": B / dense, "sparse": B / sparse,
                             "runs": dense_run / sparse_run, "roofline": max(same, square),
                             "adam": adam_seconds(base, 5, device), "step": sparse})
    return rows


def print_sparse_rows(rows: list[dict], device: str, B: int) -> None:
    print(f"\nSparsity-aware step on {device}: dense vs sparse, batch {B}, "
          f"torch threads={torch.get_num_threads()}")
    print(f"{'preset':16s} {'d':>4s} {'width':>6s} {'arch':5s} {'L0':>5s} {'dense/s':>9s} "
          f"{'sparse/s':>9s} {'ratio':>6s} {'eff GFLOP/s':>11s} {'roofline':>9s} "
          f"{'ratio':>6s} {'Adam ms':>8s} {'step ms':>8s} {'runs':>5s}")
    for r in rows:
        eff = r["sparse"] * 12 * r["d"] * r["width"]
        print(f"{r['preset']:16s} {r['d']:4d} {r['width']:6d} {r['arch']:5s} {r['l0']:5.1f} "
              f"{r['dense']:9.0f} {r['sparse']:9.0f} {r['sparse'] / r['dense']:6.2f} "
              f"{eff / 1e9:11.1f} {r['roofline'] / 1e9:9.1f} {eff / r['roofline']:6.2f} "
              f"{r['adam'] * 1e3:8.1f} {r['step'] * 1e3:8.1f} {r['runs']:5.2f}")
    print("(samples/s and step ms: the median step past the first two of a run, the best "
          "run; runs: the dense run's wall time over the sparse run's, set-up included)")
    target = [r for r in rows if r["d"] == 768 and r["width"] == 4096]
    if target:
        met = all(r["sparse"] >= 3 * r["dense"]
                  and r["sparse"] * 12 * r["d"] * r["width"] >= 2 * r["roofline"]
                  for r in target)
        print(f"target: d=768, width 4096, relu and topk: sparse step >= 3x the dense step "
              f"and >= 2x the roofline -> {'met' if met else 'NOT met'}")


# -- --kernels: the products of the sparse step by every candidate method -------------------
def best_time(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def kernels(args) -> None:
    B, d, width, k = args.batch, 768, 4096, args.l0
    gen = torch.Generator().manual_seed(0)
    idx = torch.rand(B, width, generator=gen).topk(k, dim=1).indices.sort(dim=1).values
    codes = torch.zeros(B, width).scatter_(1, idx, torch.rand(B, k, generator=gen))
    W_dec, W_enc = torch.randn(width, d, generator=gen), torch.randn(d, width, generator=gen)
    G, X = torch.randn(B, d, generator=gen), torch.randn(B, d, generator=gen)
    active = ActiveSet.from_codes(codes)
    values = active.gather(codes)
    rows, cols = active.rows, active.cols
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = codes.to_sparse_csr()
    out = torch.empty(width, d)
    grad_enc = torch.empty(d, width)
    pre = torch.randn(B, width, generator=gen)
    cases = {
        "decode f W_dec": {
            "embedding_bag (chosen)": lambda: active.decode(values, W_dec),
            "CSR @ W_dec": lambda: csr @ W_dec,
            "dense mm": lambda: codes @ W_dec},
        "code gradient (g W_dec^T) at entries": {
            "sampled_addmm (chosen)": lambda: active.sampled_products(G, W_dec),
            "gather W_dec rows + bmm": lambda: torch.bmm(
                W_dec[idx], G[:, :, None]).squeeze(2),
            "dense mm + gather": lambda: (G @ W_dec.T)[rows, cols]},
        "decoder gradient f^T g": {
            "CSR^T @ g, addmm into buffer (chosen)": lambda: active.latent_products(
                values, G, out),
            "index_add_ of weighted rows": lambda: out.zero_().index_add_(
                0, cols, G[rows] * values[:, None]),
            "dense mm": lambda: torch.mm(codes.T, G, out=out)},
        "encoder gradient x^T h": {
            "CSR^T @ x + blocked copy (chosen)": lambda: transposed_copy_(
                grad_enc, active.latent_products(values, X, out, by_bag=False)),
            "CSR^T @ x + one whole copy": lambda: grad_enc.copy_(
                active.latent_products(values, X, out, by_bag=False).T),
            "dense @ CSR": lambda: torch.mm(X.T, csr),
            "dense mm": lambda: torch.mm(X.T, codes, out=grad_enc)},
        "input gradient h W_enc^T": {
            "embedding_bag on W_enc^T (chosen)": lambda: active.sample_products(
                values, W_enc.T),
            "CSR @ W_enc^T": lambda: csr @ W_enc.T,
            "dense mm": lambda: codes @ W_enc.T},
        "encoder gradient's transposing copy": {
            **{f"blocks of {rows} latents" + (" (chosen)" if rows == TRANSPOSE_BLOCK else ""):
               (lambda rows=rows: transposed_copy_(grad_enc, out, rows))
               for rows in (32, 64, 128, 256, 512)},
            "one whole copy": lambda: grad_enc.copy_(out.T)},
        "stable sort of the entries by latent": {
            "numpy uint16 radix sort (chosen)": lambda: _stable_argsort(cols, width),
            "torch.argsort(stable=True)": lambda: torch.argsort(cols, stable=True)},
        "listing the active entries": {
            "numpy flatnonzero (chosen)": lambda: flat_nonzero(codes),
            "torch.nonzero": lambda: torch.nonzero(codes.reshape(-1)),
            "to_sparse_csr": lambda: codes.to_sparse_csr()},
        "top-k of each row (TopK)": {
            "row_topk, by column (chosen)": lambda: row_topk(pre, k, by_column=True),
            "row_topk, by value": lambda: row_topk(pre, k),
            "torch.topk": lambda: pre.topk(k, dim=1)},
        "top-k*n of the batch (BatchTopK)": {
            "batch_topk (chosen)": lambda: batch_topk(pre, k * B),
            "torch.topk on the flat batch": lambda: torch.relu(pre).flatten().topk(k * B)},
    }
    print(f"Sparse-step kernels: batch {B}, d={d}, width {width}, {k} active per sample "
          f"({active.nnz} entries), torch threads={torch.get_num_threads()}")
    print(f"{'product':38s} {'method':40s} {'ms':>8s} {'/chosen':>8s}")
    for product, methods in cases.items():
        times = {name: best_time(fn, args.repeats) for name, fn in methods.items()}
        chosen = next(t for name, t in times.items() if "(chosen)" in name)
        for name, t in times.items():
            print(f"{product:38s} {name:40s} {t * 1e3:8.2f} {t / chosen:8.2f}")


# -- --crossover: where the sparse path starts to pay ------------------------------------
def step_seconds(sae, x, path: str, repeats: int) -> float:
    def step():
        sae.recycle_grads_()
        with step_path(path):
            out = sae(x)
        (0.5 * (out.x_hat - x).square().sum() / x.shape[0]
         + 0.04 * out.codes.sum() / x.shape[0]).backward()
    return best_time(step, repeats)


def relu_at_density(d: int, width: int, density: float, x):
    sae = ReLUSAE(d, width, seed=0)
    with torch.no_grad():
        sae.b_enc.sub_(torch.quantile(sae.encode_pre(x).flatten()[:: 7], 1 - density))
    return sae


def crossover(args) -> None:
    print(f"Dense vs sparse step (forward + backward of the ReLU SAE), "
          f"torch threads={torch.get_num_threads()}")
    print(f"{'batch':>6s} {'d':>4s} {'width':>6s} {'density':>8s} {'dense ms':>9s} "
          f"{'sparse ms':>10s} {'dense/sparse':>13s}")
    B = args.batch
    for d in (256, 768):
        x = torch.randn(B, d, generator=torch.Generator().manual_seed(0))
        for density in (0.005, 0.01, 0.02, 0.035, 0.05, 0.08, 0.12, 0.2):
            sae = relu_at_density(d, 4096, density, x)
            dense = step_seconds(sae, x, "dense", args.repeats)
            sparse = step_seconds(sae, x, "sparse", args.repeats)
            print(f"{B:6d} {d:4d} {4096:6d} {density:8.3f} {dense * 1e3:9.2f} "
                  f"{sparse * 1e3:10.2f} {dense / sparse:13.2f}")
    for B, d, width in ((64, 16, 256), (128, 32, 512), (256, 64, 512), (256, 64, 1024),
                        (256, 256, 1024), (1024, 256, 1024)):
        x = torch.randn(B, d, generator=torch.Generator().manual_seed(0))
        sae = relu_at_density(d, width, 0.01, x)
        dense = step_seconds(sae, x, "dense", 10 * args.repeats)
        sparse = step_seconds(sae, x, "sparse", 10 * args.repeats)
        print(f"{B:6d} {d:4d} {width:6d} {0.01:8.3f} {dense * 1e3:9.2f} {sparse * 1e3:10.2f} "
              f"{dense / sparse:13.2f}   (work {B * d * width:.2e})")


# -- --parity: the README's run, dense vs automatic switching -------------------------------
def parity(args) -> None:
    from toysae import plotting
    from toysae._tuning import SPARSE_STEP_MAX_DENSITY
    from toysae.metrics import mmcs

    data = SyntheticData(SyntheticConfig())
    width = 1024
    config = TrainConfig(n_samples=args.parity_samples)
    runs = {}
    for path in ("dense", "auto"):
        with step_path(path):
            start = time.perf_counter()
            res = train_sae("relu", data, config, width=width, progress=False,
                            eval_fn=lambda sae: {"mmcs": mmcs(data.features, sae.dictionary)})
            runs[path] = res, time.perf_counter() - start
    print(f"README reference run (width {width}, {config.n_samples} samples, batch "
          f"{config.batch_size}), same seed and samples, torch threads="
          f"{torch.get_num_threads()}")
    print(f"{'quantity':40s} {'auto':>10s} {'dense':>10s} {'ratio':>8s}")
    auto, dense = runs["auto"][0], runs["dense"][0]
    print(f"{'final MMCS':40s} {auto.final['mmcs']:10.4f} {dense.final['mmcs']:10.4f} "
          f"{auto.final['mmcs'] - dense.final['mmcs']:+8.4f}")
    print(f"{'wall seconds':40s} {runs['auto'][1]:10.1f} {runs['dense'][1]:10.1f} "
          f"{runs['dense'][1] / runs['auto'][1]:8.2f}")
    sparse_share = float((auto.history["l0"] / width <= SPARSE_STEP_MAX_DENSITY).mean())
    print(f"{'logged steps at or below the switch':40s} {sparse_share:10.2f}")
    met = abs(auto.final["mmcs"] - dense.final["mmcs"]) <= 0.002
    print(f"target: MMCS within 0.002 of the dense step's -> {'met' if met else 'NOT met'}")
    plotting.style()
    fig, (ax1, ax2) = plotting.plt.subplots(1, 2, figsize=(9, 3.4))
    for name, (res, _) in runs.items():
        h = res.history
        label = "dense step" if name == "dense" else "sparse step when codes are sparse"
        style = "-" if name == "dense" else "--"
        ax1.plot(h["samples"] / 1e3, h["mmcs"], label=label, lw=1.5, ls=style)
        ax2.plot(h["samples"] / 1e3, h["l0"] / width, lw=1.5, ls=style)
    ax2.axhline(SPARSE_STEP_MAX_DENSITY, color="grey", lw=1)
    ax2.text(0, SPARSE_STEP_MAX_DENSITY, " switch", va="bottom", color="grey", fontsize=8)
    ax1.set(xlabel="samples (thousands)", ylabel="MMCS", title="recovery: the same curve")
    ax2.set(xlabel="samples (thousands)", ylabel="code density (L0 / width)", yscale="log",
            title="dense above the switch, sparse below")
    ax1.legend(loc="lower right")
    path = plotting.save_figure(fig, ROOT / "figures" / "sparse-step-parity.png")
    print(f"figure: {path.relative_to(ROOT)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--widths", type=int, nargs="+", default=[4096, 16384],
                        help="widths of the sparse-step rows")
    parser.add_argument("--sparse-steps", type=int, default=10)
    parser.add_argument("--l0", type=int, default=25)
    parser.add_argument("--pool", type=int, default=8, help="pre-generated batches per preset")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parity-samples", type=int, default=300_000)
    parser.add_argument("--no-sparse", action="store_true",
                        help="only the default ReLU SAE's rows (section 1)")
    parser.add_argument("--quick", action="store_true", help="every row, tiny runs (a smoke "
                        "test: the figures mean nothing)")
    mode = parser.add_mutually_exclusive_group()
    for name in ("kernels", "crossover", "parity"):
        mode.add_argument(f"--{name}", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds, args.sparse_steps, args.pool = 4, 1, 2, 2
        args.repeats, args.parity_samples = 1, 20_000
    if args.kernels:
        return kernels(args)
    if args.crossover:
        return crossover(args)
    if args.parity:
        return parity(args)
    classic(args)
    if args.no_sparse:
        return
    print_sparse_rows(sparse_rows(args), "cpu", args.batch)
    if torch.cuda.is_available():
        print_sparse_rows(sparse_rows(args, "cuda"), "cuda", args.batch)


if __name__ == "__main__":
    main()
