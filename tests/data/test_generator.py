"""Ground-truth generator: rates, correlation, structure, reproducibility, bad input."""

import numpy as np
import pytest

from toysae.data import Batch, SyntheticConfig, SyntheticData


def _rates_within(codes, p, n_se=4.0):
    measured = (codes != 0).mean(axis=0)
    se = np.sqrt(p * (1 - p) / codes.shape[0])
    return np.abs(measured - p) <= n_se * se + 1e-12


@pytest.mark.parametrize("correlation", ["none", "random", "low_rank"])
def test_marginal_rates_match_probabilities(correlation):
    data = SyntheticData(SyntheticConfig(correlation=correlation, seed=3))
    codes = data.sample(200_000).codes
    ok = _rates_within(codes, data.probabilities)
    assert ok.all(), f"features off by > 4 SE: {np.flatnonzero(~ok)}"


def test_rates_detect_a_wrong_rate():
    # the check above must be able to fail: compare against rates off by 20%
    data = SyntheticData(SyntheticConfig(correlation="none", seed=3))
    codes = data.sample(200_000).codes
    assert not _rates_within(codes, data.probabilities * 1.2).all()


@pytest.mark.parametrize("correlation", ["none", "random", "low_rank"])
def test_mean_active_count(correlation):
    cfg = SyntheticConfig(correlation=correlation, mean_active=5.0, seed=1)
    counts = (SyntheticData(cfg).sample(100_000).codes != 0).sum(axis=1)
    assert abs(counts.mean() - 5.0) <= 4 * counts.std() / np.sqrt(len(counts))
    assert np.isclose(SyntheticData(cfg).probabilities.sum(), 5.0)


def test_probabilities_decay_by_index():
    p = SyntheticData(SyntheticConfig(decay=0.9, n_features=20, d=8, mean_active=2)).probabilities
    assert np.allclose(p[1:] / p[:-1], 0.9)


def test_user_correlation_sign_gives_cofiring_sign():
    n = 6
    C = np.eye(n)
    C[0, 1] = C[1, 0] = 0.8
    C[2, 3] = C[3, 2] = -0.6
    cfg = SyntheticConfig(d=8, n_features=n, mean_active=1.2, decay=1.0,
                          correlation="matrix", correlation_matrix=C, seed=0)
    data = SyntheticData(cfg)
    fire = (data.sample(100_000).codes != 0).astype(float)
    R = np.corrcoef(fire.T)
    assert R[0, 1] > 0.2
    assert R[2, 3] < -0.02
    assert abs(R[4, 5]) < 0.02
    assert _rates_within(fire, data.probabilities).all()


def test_low_rank_correlation_matrix_is_a_correlation():
    data = SyntheticData(SyntheticConfig(correlation="low_rank", correlation_rank=5,
                                         correlation_strength=0.6, n_features=40, d=10))
    C = data.correlation
    assert np.allclose(np.diag(C), 1.0)
    assert np.linalg.eigvalsh(C)[0] > -1e-10
    assert np.linalg.matrix_rank(C - 0.4 * np.eye(40)) == 5


def test_low_rank_cofiring_follows_correlation():
    data = SyntheticData(SyntheticConfig(correlation="low_rank", correlation_rank=2,
                                         correlation_strength=0.9, n_features=12, d=6,
                                         mean_active=3, decay=1.0))
    fire = (data.sample(100_000).codes != 0).astype(float)
    R = np.corrcoef(fire.T)[np.triu_indices(12, 1)]
    C = data.correlation[np.triu_indices(12, 1)]
    assert np.corrcoef(R, C)[0, 1] > 0.9


def test_child_never_fires_without_parent():
    cfg = SyntheticConfig(d=16, n_features=10, mean_active=3, decay=1.0,
                          hierarchy=((0, 1), (0, 2), (1, 3)), correlation="random")
    codes = SyntheticData(cfg).sample(50_000).codes
    on = codes != 0
    for parent, child in cfg.hierarchy:
        assert on[:, child].any()
        assert not (on[:, child] & ~on[:, parent]).any()


def test_exclusive_group_never_cofires():
    cfg = SyntheticConfig(d=16, n_features=10, mean_active=5, decay=1.0,
                          exclusive_groups=((0, 1, 2), (5, 6)))
    on = SyntheticData(cfg).sample(50_000).codes != 0
    for group in cfg.exclusive_groups:
        assert on[:, list(group)].sum(axis=1).max() == 1
        assert on[:, list(group)].any(axis=0).all()
    assert on[:, [3, 4]].all(axis=1).any()  # features outside groups still co-fire


def test_same_seed_identical_different_seed_differs():
    cfg = SyntheticConfig(d=32, n_features=64, correlation="random", noise=0.1)
    a, b = SyntheticData(cfg), SyntheticData(cfg)
    for _ in range(2):  # the stream stays in step
        x, y = a.sample(5000), b.sample(5000)
        assert np.array_equal(x.x, y.x) and np.array_equal(x.codes, y.codes)
    assert np.array_equal(a.features, b.features)
    c = SyntheticData(SyntheticConfig(d=32, n_features=64, correlation="random", noise=0.1,
                                      seed=1))
    assert not np.array_equal(c.features, a.features)
    assert not np.array_equal(c.sample(100).codes, SyntheticData(cfg).sample(100).codes)


def test_seeded_sample_is_independent_of_stream():
    data = SyntheticData(SyntheticConfig(d=8, n_features=16, mean_active=2))
    first = data.sample(1000, seed=7)
    data.sample(10)
    again = data.sample(1000, seed=7)
    assert np.array_equal(first.codes, again.codes)
    assert not np.array_equal(data.sample(1000).codes, first.codes)


def test_batches_iterate_and_reproduce():
    cfg = SyntheticConfig(d=8, n_features=16, mean_active=2)
    got = list(SyntheticData(cfg).batches(100, n_batches=3, seed=5))
    assert len(got) == 3 and all(isinstance(b, Batch) and b.x.shape == (100, 8) for b in got)
    again = list(SyntheticData(cfg).batches(100, n_batches=3, seed=5))
    assert all(np.array_equal(a.x, b.x) for a, b in zip(got, again, strict=True))
    assert not np.array_equal(got[0].x, got[1].x)


def test_x_is_codes_times_features_plus_noise():
    clean = SyntheticData(SyntheticConfig(d=32, n_features=64))
    b = clean.sample(40_000)  # crosses a chunk boundary
    assert np.allclose(b.x, b.codes @ clean.features, atol=1e-5)
    noisy = SyntheticData(SyntheticConfig(d=32, n_features=64, noise=0.3))
    b = noisy.sample(20_000)
    assert abs((b.x - b.codes @ noisy.features).std() - 0.3) < 0.01


def test_features_unit_and_orthogonal_option():
    F = SyntheticData(SyntheticConfig(d=20, n_features=50)).features
    assert F.shape == (50, 20) and np.allclose(np.linalg.norm(F, axis=1), 1, atol=1e-6)
    Q = SyntheticData(SyntheticConfig(d=20, n_features=12, orthogonal=True)).features
    assert np.allclose(Q @ Q.T, np.eye(12), atol=1e-6)


@pytest.mark.parametrize("law,mean", [("uniform", 0.5), ("constant", 1.0),
                                      ("exponential", 1.0), ("folded_normal", np.sqrt(2 / np.pi))])
def test_magnitude_laws(law, mean):
    codes = SyntheticData(SyntheticConfig(d=16, n_features=32, mean_active=4, magnitude=law,
                                          magnitude_scale=2.0)).sample(20_000).codes
    m = codes[codes != 0] / 2.0
    assert abs(m.mean() - mean) < 0.02
    if law == "uniform":
        assert m.max() < 1.0
    if law == "constant":
        assert np.all(m == 1.0)


def test_min_active():
    cfg = SyntheticConfig(d=16, n_features=32, mean_active=0.5, min_active=1)
    counts = (SyntheticData(cfg).sample(20_000).codes != 0).sum(axis=1)
    assert counts.min() >= 1
    unconstrained = SyntheticConfig(d=16, n_features=32, mean_active=0.5)
    assert ((SyntheticData(unconstrained).sample(20_000).codes != 0).sum(1) == 0).any()


def test_toy_3d_and_json_round_trip():
    cfg = SyntheticConfig.toy_3d(seed=4)
    assert (cfg.d, cfg.n_features, cfg.seed) == (3, 6, 4)
    for c in [cfg, SyntheticConfig(hierarchy=((0, 1),), exclusive_groups=((2, 3),)),
              SyntheticConfig(d=3, n_features=2, correlation="matrix", decay=1.0,
                              mean_active=1, correlation_matrix=[[1, 0.5], [0.5, 1]])]:
        assert SyntheticConfig.from_json(c.to_json()) == c


@pytest.mark.parametrize("kwargs,match", [
    ({"d": 0}, "d must be >= 1"),
    ({"n_features": 0}, "n_features must be >= 1"),
    ({"mean_active": 0.0}, "mean_active"),
    ({"mean_active": -1.0}, "mean_active"),
    ({"mean_active": 200.0}, "mean_active=200.0 cannot be reached"),
    ({"decay": 0.0}, "decay"),
    ({"decay": 1.2}, "decay"),
    ({"noise": -0.1}, "noise"),
    ({"hierarchy": ((0, 1), (1, 0))}, "cycle"),
    ({"hierarchy": ((0, 600),)}, "hierarchy index 600"),
    ({"hierarchy": ((0, 2), (1, 2))}, "two parents"),
    ({"hierarchy": ((0, 1),), "exclusive_groups": ((1, 0),)}, "ancestor"),
    ({"exclusive_groups": ((0, 999),)}, "exclusive_groups index 999"),
    ({"magnitude": "gamma"}, "magnitude"),
    ({"correlation": "weird"}, "correlation"),
    ({"orthogonal": True}, "orthogonal"),
    ({"correlation": "matrix"}, "correlation_matrix"),
])
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticConfig(**kwargs)


@pytest.mark.parametrize("matrix,match", [
    ([[1, 0.5], [0.2, 1]], "symmetric"),
    ([[2, 0.5], [0.5, 1]], "unit diagonal"),
    ([[1, 1.5], [1.5, 1]], "positive semi-definite"),
    ([[1, 0], [0, 1], [0, 0]], "shape"),
    ([[1, np.nan], [np.nan, 1]], "NaN"),
])
def test_bad_correlation_matrix_raises(matrix, match):
    with pytest.raises(ValueError, match=match):
        SyntheticConfig(d=2, n_features=2, mean_active=1, decay=1.0, correlation="matrix",
                        correlation_matrix=matrix)


def test_bad_arguments_raise():
    data = SyntheticData(SyntheticConfig(d=4, n_features=8, mean_active=1))
    with pytest.raises(ValueError, match="n must be >= 1"):
        data.sample(0)
    with pytest.raises(TypeError, match="n must be an int"):
        data.sample(2.5)
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(0))
    with pytest.raises(TypeError, match="config"):
        SyntheticData("reference")
    with pytest.raises(TypeError, match="seed"):
        SyntheticConfig(seed=1.5)


# -- firing laws -------------------------------------------------------------
def test_zipf_law_rates_and_measured_marginals():
    cfg = SyntheticConfig(d=16, n_features=200, firing="zipf", zipf_exponent=0.7,
                          p_min=0.002, p_max=0.3, correlation="low_rank", seed=2)
    data = SyntheticData(cfg)
    p = data.law_rates
    w = np.arange(1, 201) ** -0.7
    assert np.allclose(p, 0.002 + 0.298 * (w - w[-1]) / (w[0] - w[-1]))
    assert np.isclose(p[0], 0.3) and np.isclose(p[-1], 0.002) and np.all(np.diff(p) < 0)
    assert np.array_equal(p, data.probabilities)
    ok = _rates_within(data.sample(100_000).codes, p)
    assert ok.all(), f"features off by > 4 SE: {np.flatnonzero(~ok)}"


@pytest.mark.parametrize("correlation", ["none", "random"])
def test_explicit_rates_measured_marginals(correlation):
    rates = np.random.default_rng(0).uniform(0.001, 0.6, 64)
    rates[5] = 1.0
    data = SyntheticData(SyntheticConfig(d=16, n_features=64, firing="explicit", rates=rates,
                                         correlation=correlation))
    assert np.allclose(data.law_rates, rates)
    codes = data.sample(100_000).codes
    assert _rates_within(codes, rates).all()
    assert (codes[:, 5] != 0).all()


def test_firing_law_json_round_trip():
    for c in [SyntheticConfig(firing="zipf", zipf_exponent=0.5, p_min=1e-3, p_max=0.2),
              SyntheticConfig(d=4, n_features=3, firing="explicit", rates=[0.1, 0.5, 1.0])]:
        back = SyntheticConfig.from_json(c.to_json())
        assert back == c
        assert np.array_equal(SyntheticData(back).sample(500).codes,
                              SyntheticData(c).sample(500).codes)


@pytest.mark.parametrize("kwargs,match", [
    ({"firing": "zipf", "zipf_exponent": 0.0}, "zipf_exponent"),
    ({"firing": "zipf", "zipf_exponent": -1.0}, "zipf_exponent"),
    ({"firing": "zipf", "p_min": 0.5, "p_max": 0.1}, "p_min"),
    ({"firing": "zipf", "p_max": 1.5}, "p_max"),
    ({"firing": "zipf", "p_min": 0.0}, "p_min"),
    ({"firing": "poisson"}, "firing"),
    ({"firing": "explicit"}, "needs rates"),
    ({"rates": (0.1,) * 512}, "rates is given"),
    ({"n_features": 3, "firing": "explicit", "rates": (0.1, 0.0, 0.2)}, r"rates\[1\]"),
    ({"n_features": 3, "firing": "explicit", "rates": (0.1, 1.2, 0.2)}, "rates"),
    ({"n_features": 3, "firing": "explicit", "rates": (0.1, 0.2)}, "rates must have length"),
])
def test_bad_firing_law_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticConfig(**kwargs)


# -- hierarchy trees ---------------------------------------------------------
def test_tree_pairs_breadth_first_from_zero():
    cfg = SyntheticConfig(d=8, n_features=30, mean_active=2, tree_roots=2, tree_branching=3,
                          tree_depth=3)
    pairs = cfg.tree_pairs
    assert len(pairs) == 2 * 3 + 6 * 3
    assert pairs[:6] == ((0, 2), (0, 3), (0, 4), (1, 5), (1, 6), (1, 7))
    assert pairs[6:9] == ((2, 8), (2, 9), (2, 10)) and pairs[-1] == (7, 25)
    assert [c for _, c in pairs] == list(range(2, 26))  # nodes 0..25; 26..29 outside the tree
    assert SyntheticConfig(d=8, n_features=20, tree_roots=3, tree_depth=1).tree_pairs == ()


@pytest.mark.parametrize("correlation", ["none", "low_rank"])
def test_tree_children_need_parent_and_exclusive_children(correlation):
    cfg = SyntheticConfig(d=16, n_features=80, firing="zipf", zipf_exponent=0.3, p_min=0.05,
                          p_max=0.5, tree_roots=3, tree_branching=4, tree_depth=3,
                          exclusive_children=True, correlation=correlation, seed=1)
    on = SyntheticData(cfg).sample(50_000).codes != 0
    by_parent = {}
    for parent, child in cfg.hierarchy_pairs:
        assert on[:, child].any()
        assert not (on[:, child] & ~on[:, parent]).any()
        by_parent.setdefault(parent, []).append(child)
    for kids in by_parent.values():
        assert on[:, kids].sum(axis=1).max() == 1
    # without exclusivity siblings do co-fire
    free = SyntheticData(SyntheticConfig(**{**cfg.to_dict(), "exclusive_children": False}))
    on = free.sample(50_000).codes != 0
    assert max(on[:, k].sum(axis=1).max() for k in by_parent.values()) > 1


def test_exclusive_children_of_explicit_hierarchy():
    cfg = SyntheticConfig(d=8, n_features=10, mean_active=4, decay=1.0,
                          hierarchy=((0, 1), (0, 2), (0, 3), (1, 4), (1, 5)),
                          exclusive_children=True)
    on = SyntheticData(cfg).sample(20_000).codes != 0
    assert on[:, [1, 2, 3]].sum(1).max() == 1 and on[:, [4, 5]].sum(1).max() == 1
    assert on[:, [1, 2, 3, 4, 5]].any(axis=0).all()


def test_compensated_marginals_match_the_law():
    cfg = SyntheticConfig(d=16, n_features=100, firing="zipf", zipf_exponent=0.8, p_min=0.01,
                          p_max=0.6, tree_roots=4, tree_branching=3, tree_depth=3,
                          compensate_rates=True, correlation="none", seed=5)
    data = SyntheticData(cfg)
    law = data.law_rates
    codes = data.sample(100_000).codes
    assert _rates_within(codes, law).all()  # Zipf decreases, so every child is below its parent
    own = data.probabilities
    for parent, child in cfg.tree_pairs[:4]:
        assert np.isclose(own[child], law[child] / law[parent])
    # uncompensated: a child's marginal is the product along its path, below the law
    plain = SyntheticData(SyntheticConfig(**{**cfg.to_dict(), "compensate_rates": False}))
    measured = (plain.sample(50_000).codes != 0).mean(0)
    kids = [c for _, c in cfg.tree_pairs]
    assert np.all(measured[kids] < law[kids])


def test_compensation_caps_a_child_above_its_parent():
    rates = (0.1, 0.3, 0.05, 0.2)
    cfg = SyntheticConfig(d=4, n_features=4, firing="explicit", rates=rates,
                          hierarchy=((0, 1), (0, 2), (2, 3)), compensate_rates=True,
                          correlation="none")
    data = SyntheticData(cfg)
    assert np.allclose(data.probabilities, [0.1, 1.0, 0.5, 1.0])
    on = data.sample(50_000).codes != 0
    assert np.array_equal(on[:, 1], on[:, 0])  # capped: fires whenever its parent fires
    assert np.array_equal(on[:, 3], on[:, 2])
    assert _rates_within(on[:, [0, 2]], np.array([0.1, 0.05])).all()


def test_scale_child_magnitude():
    cfg = SyntheticConfig(d=8, n_features=6, mean_active=3, decay=1.0, magnitude="exponential",
                          hierarchy=((0, 1), (1, 2)), scale_child_magnitude=True,
                          correlation="none")
    codes = SyntheticData(cfg).sample(200_000).codes
    on = codes[:, 2] != 0
    assert np.corrcoef(codes[on, 1], codes[on, 2])[0, 1] > 0.3
    for i in range(6):
        m = codes[codes[:, i] != 0, i]
        assert abs(m.mean() - 1.0) < 5 * m.std() / np.sqrt(len(m))
    plain = SyntheticData(SyntheticConfig(**{**cfg.to_dict(), "scale_child_magnitude": False}))
    codes = plain.sample(50_000).codes
    on = codes[:, 2] != 0
    assert abs(np.corrcoef(codes[on, 1], codes[on, 2])[0, 1]) < 0.05


def test_tree_json_round_trip():
    c = SyntheticConfig(tree_roots=4, tree_branching=2, tree_depth=3, exclusive_children=True,
                        compensate_rates=True, scale_child_magnitude=True,
                        hierarchy=((100, 101),), magnitude="folded_normal",
                        magnitude_mean=(5.0, 4.0), magnitude_spread=0.5)
    assert SyntheticConfig.from_json(c.to_json()) == c


@pytest.mark.parametrize("kwargs,match", [
    ({"tree_roots": 100, "tree_branching": 2, "tree_depth": 3}, "tree_roots=100"),
    ({"tree_roots": 1, "tree_branching": 0}, "tree_branching"),
    ({"tree_roots": 1, "tree_depth": 0}, "tree_depth"),
    ({"tree_roots": -1}, "tree_roots"),
    ({"tree_roots": 2, "tree_branching": 2, "hierarchy": ((0, 3),)}, "two parents"),
    ({"magnitude_mean": (5.0, 4.0)}, "magnitude_mean"),
    ({"magnitude": "folded_normal", "magnitude_spread": 0.5}, "magnitude_spread needs"),
    ({"magnitude": "folded_normal", "magnitude_mean": (1, 2, 3)}, "magnitude_mean"),
    ({"magnitude": "folded_normal", "magnitude_mean": (-1.0, 2.0)}, "magnitude_mean"),
    ({"magnitude": "folded_normal", "magnitude_mean": 1.0, "magnitude_spread": (0.0, 1.0)},
     "magnitude_spread"),
    ({"magnitude": "constant", "magnitude_mean": (0.0, 1.0)}, "magnitude_mean must be > 0"),
])
def test_bad_tree_or_magnitude_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticConfig(**{"d": 8, "n_features": 200, "mean_active": 2, **kwargs})


def test_tree_flags_must_be_bools():
    with pytest.raises(TypeError, match="exclusive_children"):
        SyntheticConfig(exclusive_children=1)


# -- per-feature magnitudes ----------------------------------------------------
@pytest.mark.parametrize("law,spread", [("folded_normal", (0.5, 2.0)), ("constant", None)])
def test_magnitude_ramps_measured_means(law, spread):
    cfg = SyntheticConfig(d=16, n_features=40, mean_active=10, decay=1.0, magnitude=law,
                          magnitude_mean=(2.0, 0.5), magnitude_spread=spread, correlation="none",
                          magnitude_scale=1.5)
    data = SyntheticData(cfg)
    expect = data.magnitude_means
    if law == "constant":
        assert np.allclose(expect, 1.5 * np.linspace(2.0, 0.5, 40))
    codes = data.sample(50_000).codes
    for i in range(40):
        m = codes[codes[:, i] != 0, i]
        assert abs(m.mean() - expect[i]) < 5 * m.std() / np.sqrt(len(m)) + 1e-6
    m0 = codes[codes[:, 0] != 0, 0]
    if law == "folded_normal":
        assert m0.min() >= 0 and abs(m0.std() - 1.5 * 0.5) < 0.02  # mu >> sigma: nearly normal


# -- benchmark presets -----------------------------------------------------------
def _check_preset(cfg, n, l0, l0_tol):
    data = SyntheticData(cfg)
    codes = data.sample(n, seed=11).codes
    on = codes != 0
    assert abs(on.sum(1).mean() - l0) < l0_tol
    law = data.law_rates
    assert np.isclose(law[0], 0.4) and np.isclose(law[-1], 5e-4)
    w = np.arange(1, cfg.n_features + 1) ** -0.5
    assert np.allclose(law, 5e-4 + (0.4 - 5e-4) * (w - w[-1]) / (w[0] - w[-1]))
    roots = np.arange(cfg.tree_roots)  # top-level features keep the law's rate
    assert _rates_within(codes[:, roots], law[roots], n_se=4.5).all()
    size = cfg.tree_roots * sum(cfg.tree_branching**k for k in range(cfg.tree_depth))
    rest = np.arange(size, cfg.n_features)  # outside the tree: the law too, block means
    blocks = np.array_split(rest, 20)
    measured = np.array([on[:, b].mean() for b in blocks])
    expect = np.array([law[b].mean() for b in blocks])
    se = np.sqrt(expect / (n * np.array([len(b) for b in blocks])))
    assert np.all(np.abs(measured - expect) < 4 * se)
    spearman = np.corrcoef(np.argsort(np.argsort(measured)), np.arange(20))[0, 1]
    assert np.all(np.diff(expect) < 0) and spearman < -0.95  # rates fall with the index
    kids = np.array([c for _, c in cfg.tree_pairs]).reshape(-1, cfg.tree_branching)
    parents = np.array([p for p, _ in cfg.tree_pairs])[::cfg.tree_branching]
    assert on[:, kids].sum(2).max() == 1  # exclusive children
    assert not (on[:, kids] & ~on[:, parents][:, :, None]).any()  # children need parents
    assert on[:, kids].any()
    m = codes[on[:, 0], 0]
    assert abs(m.mean() - data.magnitude_means[0]) < 0.1 and abs(data.magnitude_means[0] - 5) < 1e-3


def test_synth_sae_bench_preset():
    cfg = SyntheticConfig.synth_sae_bench()
    assert (cfg.n_features, cfg.d, cfg.correlation_rank, cfg.tree_roots) == (16384, 768, 25, 128)
    # true L0 about 34: 34.06 expected before sibling exclusion; SE at 4,000 samples ~0.1
    _check_preset(cfg, 4000, 34.0, 0.8)


def test_synth_small_preset():
    cfg = SyntheticConfig.synth_small()
    assert cfg.n_features == 2048 and 128 <= cfg.d <= 256
    _check_preset(cfg, 20_000, 10.6, 0.3)
    assert SyntheticConfig.from_json(cfg.to_json()) == cfg


def test_structured_config_reproducible_from_seed():
    cfg = SyntheticConfig.synth_small(compensate_rates=True, scale_child_magnitude=True)
    a, b = SyntheticData(cfg).sample(3000), SyntheticData(cfg).sample(3000)
    assert np.array_equal(a.codes, b.codes) and np.array_equal(a.x, b.x)
    c = SyntheticData(SyntheticConfig.synth_small(compensate_rates=True,
                                                  scale_child_magnitude=True, seed=1))
    assert not np.array_equal(c.sample(3000).codes, a.codes)


# -- hostile configs: tiny rates, deep hierarchies in any order, non-int indices ------
@pytest.mark.parametrize("mean_active", [1e-20, 1e-300, 5e-324])
@pytest.mark.parametrize("correlation", ["none", "low_rank", "random"])
@pytest.mark.parametrize("hierarchy", [(), ((0, 1), (1, 2))])
def test_very_small_mean_active_samples_nothing_without_errors(mean_active, correlation,
                                                                hierarchy):
    import warnings

    cfg = SyntheticConfig(d=6, n_features=16, mean_active=mean_active, correlation=correlation,
                          hierarchy=hierarchy, compensate_rates=bool(hierarchy))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero, no invalid value
        data = SyntheticData(cfg)
        batch = data.sample(3000)
    assert np.isfinite(data.probabilities).all() and (data.probabilities >= 0).all()
    assert batch.codes.sum() == 0 and not batch.x.any()  # 3000 * 1e-20: nothing fires


@pytest.mark.parametrize("order", ["child-before-parent", "shuffled"])
def test_a_chain_hierarchy_5000_deep_in_any_order(order):
    n = 5000
    pairs = [(i, i + 1) for i in range(n - 1)]
    pairs = pairs[::-1] if order == "child-before-parent" else \
        [pairs[k] for k in np.random.default_rng(0).permutation(n - 1)]
    cfg = SyntheticConfig(d=8, n_features=n, mean_active=3.0, decay=0.999, correlation="none",
                          hierarchy=tuple(pairs), compensate_rates=True,
                          exclusive_children=True)
    data = SyntheticData(cfg)  # no RecursionError building levels or compensated rates
    fire = data.sample(2000, seed=1).codes > 0
    # a feature fires only when every ancestor does: each row is a prefix of the chain
    depth = fire.sum(axis=1)
    assert (fire == (np.arange(n)[None, :] < depth[:, None])).all()
    law = data.law_rates
    assert np.isfinite(data.probabilities).all()
    np.testing.assert_allclose(fire[:, 0].mean(), law[0], atol=4 * (law[0] / 2000) ** 0.5)


def test_a_huge_tree_depth_is_refused_at_once():
    import signal

    def too_slow(*args):
        raise TimeoutError("the tree's size took over 5 s to compute")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(5)
    try:
        with pytest.raises(ValueError, match="more than n_features=50"):
            SyntheticConfig(d=4, n_features=50, tree_roots=1, tree_branching=3,
                            tree_depth=10**9)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("kwargs, kind, match", [
    ({"hierarchy": ((0, 1.5),)}, TypeError, "hierarchy must hold int indices, got 1.5"),
    ({"hierarchy": ((0, 1.0),)}, TypeError, "hierarchy must hold int indices, got 1.0"),
    ({"hierarchy": (("0", 1),)}, TypeError, "hierarchy must hold int indices, got '0'"),
    ({"hierarchy": ((0, True),)}, TypeError, "hierarchy must hold int indices, got True"),
    ({"hierarchy": ((0, 1, 2),)}, ValueError, r"hierarchy must be \(n_pairs, 2\)"),
    ({"exclusive_groups": ((0, 2.7),)}, TypeError, "exclusive_groups must hold int"),
    ({"exclusive_groups": ((True, 2),)}, TypeError, "exclusive_groups must hold int"),
    ({"exclusive_groups": "01"}, TypeError, "exclusive_groups"),
])
def test_indices_refuse_floats_bools_and_strings(kwargs, kind, match):
    with pytest.raises(kind, match=match):
        SyntheticConfig(d=4, n_features=8, mean_active=1, **kwargs)


def test_numpy_int_indices_are_accepted_and_stored_as_ints():
    cfg = SyntheticConfig(d=4, n_features=8, mean_active=1,
                          hierarchy=np.array([[0, 1], [1, 2]]),
                          exclusive_groups=[np.array([3, 4], dtype=np.int32)])
    assert cfg.hierarchy == ((0, 1), (1, 2)) and cfg.exclusive_groups == ((3, 4),)
    assert all(type(v) is int for pair in cfg.hierarchy for v in pair)
    assert SyntheticConfig.from_json(cfg.to_json()) == cfg


def test_seeds_have_a_stated_range():
    from toysae._validation import SEED_MAX

    assert SEED_MAX == 2**63 - 1
    data = SyntheticData(SyntheticConfig(d=4, n_features=8, mean_active=1, seed=SEED_MAX))
    assert data.sample(5, seed=SEED_MAX).x.shape == (5, 4)
    assert len(list(data.batches(5, 3, seed=SEED_MAX))) == 3
    for bad, kind in [(2**63, ValueError), (-1, ValueError), (3.0, TypeError),
                      ("3", TypeError), (True, TypeError)]:
        with pytest.raises(kind, match="seed"):
            SyntheticConfig(seed=bad)
        with pytest.raises(kind, match="seed"):
            data.sample(5, seed=bad)
