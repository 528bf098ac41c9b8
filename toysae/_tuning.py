"""Tuning constants, in one place, each beside the measurement that set it; and, at the
end, the constants that decide which samples and random draws a run sees.

The tuning constants are speed settings only: changing one never changes a result
beyond float rounding. Each names the benchmark that measures its effect; re-run that
benchmark before moving it. "Work" is multiply-adds of a step's dominant product.
The reproducibility constants (the last section) are not knobs: changing one changes
every seeded training run.
"""

# -- threads --------------------------------------------------------------------
# Below this much work per SAE step (batch * d * the width of all members together) the
# engine runs on one torch thread: a toy step is a chain of tiny ops and every parallel
# region waits for a thread the OS may have descheduled (a busy 2-core box ran a
# 128x12x16 product in 22 ms on 2 threads and 3 us on 1; a tiny batched-grid step took
# 40x longer on 2 threads than on 1). benchmarks/bench_sae_grid.py ("sequential,
# 1 thread" row) and benchmarks/bench_sae.py.
SAE_SMALL_WORK = 2 ** 22

# Sparse coding and dictionary learning run one thread below this n * k * k (one
# dense FISTA iteration's product). benchmarks/bench_dictlearn.py.
CODING_SMALL_WORK = 2 ** 22

# -- batched matmuls --------------------------------------------------------------
# torch's CPU bmm splits its threads over the model axis: with 3 members on 2 cores
# one core does two matrices while the other idles. Past this many multiply-adds per
# member a loop of threaded 2-D matmuls into the stacked output is faster, and the
# members step one at a time (each keeps a single SAE's working set in cache).
# benchmarks/bench_sae_grid.py (reference-size grid row).
BMM_LOOP_WORK = 2 ** 22

# The "auto" grid layout pads every member to the largest width when the padded
# matmuls are this small anyway ((padded - real) latents * d * batch), where per-call
# overhead, not arithmetic, sets the step time. benchmarks/bench_sae_grid.py.
GRID_PAD_WORK = 2 ** 22
# ... or when padding adds at most this fraction of latents.
GRID_PAD_FRACTION = 0.25

# The decoder gradient's radial part is removed in blocks of this many rows (dot and
# update while the block is in cache): 1.8 ms against 2.5 ms in one pass at width 4096,
# d 768, one thread. benchmarks/bench_sae.py (the sparse-step rows).
PARALLEL_GRAD_ROWS = 256

# -- sparse coding ------------------------------------------------------------------
# Rows per block where an (n, n_atoms) result is built piecewise, so torch's own
# temporaries stay small. benchmarks/bench_dictlearn.py.
ROW_BLOCK = 1024
# Above this many atoms the lasso runs in the active-set solver; below, dense FISTA
# (its k**2 iteration is cheap and the set bookkeeping would dominate).
# benchmarks/bench_dictlearn.py (sparse coding rows).
WORKING_SET_ABOVE = 96
# The active-set solver's first working set: the largest responses. torch's CPU topk
# is ~3x slower for k >= 9 than for k <= 8; on the reference toy 2/3 of the optimal
# supports lie in the 8 largest responses. benchmarks/bench_dictlearn.py.
FIRST_SET = 8
# ... doubled, for the samples that kept every atom of it, while they are more than half
# of the batch, up to this many atoms (toysae check's world, L0 ~ 20 at 4,096 atoms:
# the 8-atom guess fills on most samples).
# benchmarks/bench_check.py; no change on bench_dictlearn.py's toy (L0 ~ 4.5).
FIRST_SET_MAX = 64
# The working-set cap of later rounds (support + KKT violators); a sample whose
# support fills it moves to a set SET_GROWTH times as large. benchmarks/bench_dictlearn.py.
MAX_SET = 16
# The active-set solver updates its responses g = c - z G for codes on m-atom sets either
# by gathering m rows of G per sample (memory-bound: m * n_atoms reads) or through the
# dictionary, (z D) D^T (compute-bound: d * n_atoms multiply-adds, whatever m). The
# dictionary route is taken when m * GRAM_VIA_DICTIONARY > d, where they broke even at
# 4,096 atoms on 2 threads in float64: m ~ 3 at d = 64, ~ 7 at d = 256, ~ 25 at
# d = 768 (at m = 30, d = 256: 0.49 s against 0.20 s for 4,096 rows).
# Only for a Gram matrix larger than GRAM_CACHED_BYTES (the development CPU's 32 MB L3):
# a cached one is gathered fast (512 atoms, float32, d = 256: sparse coding 11.9 us/sample
# through D against 10.6 gathering G). benchmarks/bench_check.py, bench_dictlearn.py.
GRAM_VIA_DICTIONARY = 30
GRAM_CACHED_BYTES = 32 << 20
# Entries of one block of the (rows, m_new, m_old) set matching when codes move between
# working sets (16M: a 16 MB mask and a 128 MB float64 product at once). Only memory is at
# stake; the blocks give the same sums as one pass.
MOVE_BLOCK_ENTRIES = 1 << 24

# A float64 lasso solve in the active-set regime first finds its supports in float32, to
# this scaled KKT gap, then refits them in float64 (toysae/dictlearn/lasso/_mixed_precision.py).
# At 1e-4, 0-7 of 4,096 samples needed float64 rounds after the refit on
# benchmarks/bench_check.py's world (4,096 atoms, d = 256); float32 reached it on all.
SEARCH_TOL = 1e-4

# A sample whose support fills its working set moves to a set this many times as large
# (while SET_GROWTH**2 * cap <= n_atoms; past that the dense solver finishes it). 2 rather
# than 4: every row of a group pays for its widest set, and a support of 20 filling a
# 16-atom cap went to 64 atoms (4,096 samples, 4,096 atoms, d = 256: 2.1 s against 1.6 s);
# the same on bench_dictlearn.py's toy. benchmarks/bench_check.py.
SET_GROWTH = 2
# Per-sample Gram blocks up to this many atoms are multiplied by broadcasting, which
# beats batched GEMM calls on tiny blocks. benchmarks/bench_dictlearn.py.
BROADCAST_GRAM_MAX = 32
# z @ M goes through a sparse (COO) product for CPU codes of more than SPARSE_MIN_ENTRIES
# entries of which under SPARSE_MAX_DENSITY are nonzero. benchmarks/bench_dictlearn.py.
SPARSE_MIN_ENTRIES = 4096
SPARSE_MAX_DENSITY = 0.05

# DictionaryLearner.fit keeps the previous epoch's codes as warm starts while
# n_samples * n_atoms is at most this (80 MB of float32).
MAX_WARM_ENTRIES = 20_000_000

# -- checkers ---------------------------------------------------------------------
# Entries of the dense (chunk, n_atoms) float64 response block a checker builds per
# chunk of samples (32 MB). benchmarks/bench_theory.py.
CHECK_CHUNK_ENTRIES = 1 << 22
# The dense (n_samples, n_atoms) code-KKT violation matrix is kept in a report only
# below this size unless asked (40 MB of float64).
KEEP_MATRIX_ENTRIES = 5_000_000
# Entries (a pair's sample where its first atom fires) of one chunk's per-pair gather in
# the checks of a list of pairs (about a hundred bytes per entry live at once: ~100 MB).
# benchmarks/bench_theory.py (4,096- and 16,384-atom rows).
PAIR_GATHER_ENTRIES = 1 << 20

# -- the sparsity-aware SAE step ------------------------------------------------------
# An SAE step takes the sparse path (every product after the encoder's from the active
# code entries alone, toysae/sae/_sparse_kernels.py) when at most this share of the (batch, width)
# code entries is active, and the dense path (five matmuls) above it.
# benchmarks/bench_sae.py --crossover: at batch 1024, width 4096 (d 256 and 768, one
# thread, CPU time on a loaded 2-core box) the sparse step was 3.0-3.6x faster at 0.5%
# active, 1.5x at 8%, even at ~13%, slower at 20%; the switch sits at about half the
# break-even density.
SPARSE_STEP_MAX_DENSITY = 0.08
# ... and only when the step's encoder product (batch * d * width multiply-adds) is at
# least this big: below it the sparse path's fixed costs (listing, CSR set-up, a dozen
# small kernels) outweigh the matmuls it saves (same benchmark, 1% active: 0.9x at
# 2.1e6, 1.3x at 8.4e6, 1.6x at 1.7e7, 2.3x at 6.7e7).
SPARSE_STEP_MIN_WORK = 2 ** 23
# The density is measured on the first 1/SPARSE_PROBE_SHARE of the batch's rows first;
# when they are already SPARSE_PROBE_MARGIN times above the switch the step goes dense
# without listing its active entries (listing costs about as much as one pass over the
# codes).
SPARSE_PROBE_SHARE = 16
SPARSE_PROBE_MARGIN = 2.0
# The sparse step's encoder gradient is formed latent-major and copied into the
# parameter's (d, width) layout this many latents at a time (toysae/sae/_fused.py).
# benchmarks/bench_sae.py --kernels: 4096 x 768 on 2 cores, 5.9 ms whole, 5.9 at 32
# latents, 2.3 at 64, 2.0 at 128, 2.3 at 256 and 512.
TRANSPOSE_BLOCK = 128
# Fast top-k (toysae/sae/_sparse_kernels.py): row_topk reads the k best of TOPK_GROUPS interleaved
# column groups per row; batch_topk bounds the kept-th value from every
# TOPK_SAMPLE_STRIDE-th column. Both for rows at least TOPK_FAST_MIN_RATIO * k wide and
# problems of at least TOPK_FAST_MIN_ENTRIES entries (below, torch.topk is as fast).
# benchmarks/bench_sae.py --kernels.
TOPK_GROUPS = 8
# Rows of at most TOPK_SORT_MAX_WIDTH entries are cut at their k-th value by numpy's sort;
# wider ones are narrowed by groups again (or, too narrow for that, go to torch.topk).
# 1024 rows, k = 25, 2 threads: numpy's sort takes 0.30 ms at 256 entries, 0.65 at 512,
# 3.5 at 800, 18 at 2048; torch.topk 1.3, 2.3, 3.8, 5.0.
TOPK_SORT_MAX_WIDTH = 512
TOPK_SAMPLE_STRIDE = 8
TOPK_FAST_MIN_RATIO = 32
TOPK_FAST_MIN_ENTRIES = 1 << 16

# -- reproducibility: which samples and draws a run sees --------------------------------
# Not tuning knobs. Each decides which samples a training step sees or which random
# draws it makes, so changing one changes every seeded run (tests/test_behaviour_pins.py
# fails, and a checkpoint no longer resumes to the run it came from).

# A ground-truth world's (SyntheticData's) training stream is drawn in chunks of
# SYNTHETIC_CHUNK_SAMPLES // batch whole batches (at least one); chunk c is one data.sample
# call seeded derived_seed(config.seed, SEED_KEY_SYNTHETIC, c) (toysae/sae/batches.py). So
# this decides which seed each batch's samples come from.
SYNTHETIC_CHUNK_SAMPLES = 65536
# Dead-latent resampling weighs the pool's inputs by the SAE's loss on them, running the
# SAE over the pool in chunks of this many rows (toysae/sae/resampling.py). The chunk is
# the batch the SAE sees there: a batch-level selection (BatchTopK in training) and the
# rounding of each product depend on it, so it decides which inputs are drawn.
RESAMPLE_FORWARD_ROWS = 4096
# An input of norm at most this (an all-zero sample) has no direction for a new atom and
# is never drawn by resampling.
RESAMPLE_MIN_INPUT_NORM = 1e-6
# The key paths derived_seed(seed, key, ...) derives a run's independent streams from
# (toysae/sae/batches.py): the synthetic stream's chunks, an array's epoch orders, the
# resampling draws, a grid's per-width initial SAEs. Distinct, so no two share draws.
SEED_KEY_SYNTHETIC = 1
SEED_KEY_EPOCHS = 2
SEED_KEY_RESAMPLING = 3
SEED_KEY_GRID_INIT = 4
