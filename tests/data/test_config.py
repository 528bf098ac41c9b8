"""``toysae.data.config``: ``SyntheticConfig`` validates every field naming it (rates,
correlation matrices, firing laws, trees, indices), round-trips through JSON, and its
benchmark presets give the rates and structure they promise."""

import numpy as np
import pytest

from toysae.data import SyntheticConfig, SyntheticData


def _rates_within(codes, p, n_se=4.0):
    measured = (codes != 0).mean(axis=0)
    se = np.sqrt(p * (1 - p) / codes.shape[0])
    return np.abs(measured - p) <= n_se * se + 1e-12


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
    # SAELens's published tree: three levels below the roots, 10,880 nodes
    assert len(cfg.tree_pairs) == 10880 - 128 and cfg.compensate_rates
    # true L0 about 34.6 (SAELens's sampler: about 34.5); SE at 4,000 samples ~0.1
    _check_preset(cfg, 4000, 34.6, 0.8)


def test_synth_sae_bench_reduction_keeps_the_proportions():
    full = SyntheticConfig.synth_sae_bench()
    for reduction in (2, 8, 128):
        cfg = SyntheticConfig.synth_sae_bench(reduction=reduction)
        assert (cfg.n_features * reduction, cfg.d * reduction, cfg.tree_roots * reduction) == \
            (full.n_features, full.d, full.tree_roots)
        assert len(cfg.tree_pairs) * reduction == len(full.tree_pairs)
        assert {k: v for k, v in cfg.to_dict().items()
                if k not in ("n_features", "d", "tree_roots")} == \
            {k: v for k, v in full.to_dict().items() if k not in ("n_features", "d", "tree_roots")}
    assert SyntheticConfig.synth_sae_bench(reduction=8, d=100).d == 100  # overrides after it
    for bad, kind in [(3, ValueError), (0, ValueError), (256, ValueError), (2.0, TypeError)]:
        with pytest.raises(kind, match="reduction"):
            SyntheticConfig.synth_sae_bench(reduction=bad)


def test_synth_small_preset():
    cfg = SyntheticConfig.synth_small()
    assert cfg.n_features == 2048 and 128 <= cfg.d <= 256
    _check_preset(cfg, 20_000, 10.6, 0.3)
    assert SyntheticConfig.from_json(cfg.to_json()) == cfg


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
