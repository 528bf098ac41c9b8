"""``toysae._validation``: the helpers, and integer arguments and seeds at the entry points
of every layer: floats, bools and strings are refused (never truncated), seeds lie in
[0, SEED_MAX]."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from toysae import experiments
from toysae._validation import (
    SEED_MAX,
    check_indices,
    check_int,
    check_norm_range,
    check_seed,
    norm_limit,
    shifted_seed,
    tensor_to_numpy,
    to_numpy,
)
from toysae.data import SyntheticConfig
from toysae.dictlearn import DictionaryLearner, ica_dictionary, kmeans_dictionary
from toysae.metrics import absorption_rate
from toysae.models.residual import ResidualToyConfig
from toysae.models.tms import TMSConfig, TMSHost
from toysae.sae import TrainConfig
from toysae.sae.ensemble import ReLUSAEEnsemble
from toysae.theory import atom_stationarity, code_kkt, pair_conditions

NOT_INTS = [2.0, 2.5, "2", True, None, np.float64(2.0)]


def test_the_helpers():
    assert check_int(np.int32(3), "k", minimum=1) == 3 and type(check_int(np.int64(3), "k")) is int
    for bad in NOT_INTS:
        with pytest.raises(TypeError, match="k must be an int"):
            check_int(bad, "k")
    assert check_seed(0) == 0 and check_seed(SEED_MAX) == SEED_MAX == 2**63 - 1
    with pytest.raises(ValueError, match="seed must be <= 9223372036854775807"):
        check_seed(2**63)
    assert shifted_seed(5, 3, 1000) == 5003 and shifted_seed(SEED_MAX, 1) == 0
    assert check_indices(np.array([2, 0]), "idx", 3).tolist() == [2, 0]


def _configs():
    out = [SyntheticConfig(), TrainConfig(), ResidualToyConfig(), TMSConfig()]
    return out + [experiments.get(name).Config.quick() for name in experiments.available()]


@pytest.mark.parametrize("config", _configs(), ids=lambda c: type(c).__module__)
def test_every_config_refuses_non_int_ints_and_out_of_range_seeds(config):
    fields = [f.name for f in dataclasses.fields(config) if type(getattr(config, f.name)) is int]
    assert fields
    for name in fields:
        for bad in (getattr(config, name) + 0.5, float(getattr(config, name)), "1", True):
            with pytest.raises(TypeError, match=name):
                dataclasses.replace(config, **{name: bad})
    seeds = [name for name in fields if name == "seed"]
    for name in seeds:
        with pytest.raises(ValueError, match="seed must be <= 9223372036854775807"):
            dataclasses.replace(config, **{name: 2**63})
        assert dataclasses.replace(config, **{name: SEED_MAX}).seed == SEED_MAX


def test_other_entry_points_refuse_big_seeds_and_non_ints():
    X = np.random.default_rng(0).standard_normal((40, 3))
    with pytest.raises(ValueError, match="seed must be <="):
        DictionaryLearner(4, 0.1, seed=2**63, progress=False).fit(X)
    with pytest.raises(ValueError, match="seed must be <="):
        ica_dictionary(X, 2, seed=2**63)
    with pytest.raises(ValueError, match="seed must be <="):
        kmeans_dictionary(X, 2, seed=2**63)
    with pytest.raises(ValueError, match=r"seeds\[1\] must be <="):
        ReLUSAEEnsemble(3, [4, 4], seeds=[0, 2**63])
    with pytest.raises(TypeError, match=r"seeds\[0\] must be an int"):
        ReLUSAEEnsemble(3, [4, 4], seeds=[0.0, 1])
    host = TMSHost(TMSConfig(n_features=4, hidden=2))
    with pytest.raises(ValueError, match="seed must be <="):
        host.sample(3, seed=2**64)  # torch's "Overflow when unpacking long" before
    assert host.sample(3, seed=SEED_MAX).inputs.shape == (3, 4)


def _checker_inputs():
    rng = np.random.default_rng(0)
    D = np.eye(3)
    Z = np.abs(rng.standard_normal((20, 3)))
    return Z @ D + 0.01 * rng.standard_normal((20, 3)), D, Z


@pytest.mark.parametrize("check", [code_kkt, atom_stationarity, pair_conditions])
def test_checkers_refuse_a_non_int_n_worst(check):
    X, D, Z = _checker_inputs()
    for bad in (2.5, "2", True):
        with pytest.raises(TypeError, match="n_worst must be an int"):
            check(X, D, Z, 0.1, n_worst=bad)
    with pytest.raises(ValueError, match="n_worst must be >= 0"):
        check(X, D, Z, 0.1, n_worst=-1)


def test_index_pairs_refuse_bools_hidden_in_lists():
    X, D, Z = _checker_inputs()
    with pytest.raises(TypeError, match="pairs must hold int indices, got True"):
        pair_conditions(X, D, Z, 0.1, pairs=[(0, True)])  # read as the pair (0, 1) before
    T = np.eye(3)[[0, 1, 2, 0]]
    with pytest.raises(TypeError, match="hierarchy must hold int indices, got True"):
        absorption_rate(T, T, np.eye(3), np.eye(3), [(0, True)])
    with pytest.raises(TypeError, match="Z must be real"):
        code_kkt(X, D, sp.csr_matrix(Z.astype(complex)), 0.1)


def test_to_numpy_keeps_float_dtypes_when_asked():
    x32 = np.ones((2, 2), dtype=np.float32)
    assert to_numpy(x32, "x", dtype=None) is x32
    assert to_numpy([[1, 2]], "x", dtype=None).dtype == np.float64
    with pytest.raises(TypeError, match="x"):
        to_numpy([["a"]], "x", dtype=None)


def test_tensors_numpy_lacks_a_dtype_for_are_widened_exactly():
    x = torch.randn(6, 5).to(torch.bfloat16)
    wide = to_numpy(x, "x", dtype=None)
    assert wide.dtype == np.float32 and np.array_equal(wide, x.float().numpy())
    if hasattr(torch, "float8_e4m3fn"):
        f8 = torch.tensor([[0.5, -2.0]]).to(torch.float8_e4m3fn)
        assert np.array_equal(tensor_to_numpy(f8), [[0.5, -2.0]])
    assert tensor_to_numpy(torch.ones(2, 2, dtype=torch.float16)).dtype == np.float16


def test_norm_range_names_the_argument_and_the_limit():
    assert norm_limit(np.float32) == pytest.approx(2.81e14, rel=1e-2)
    assert norm_limit(torch.float64) == pytest.approx(2.05e149, rel=1e-2)
    check_norm_range(np.array([1.0, 2.8e14]), "X", np.float32, "f")
    with pytest.raises(ValueError, match=r"Q: row 1 has norm 3e\+14, above 2.81e\+14, the "
                                         r"largest f accepts in float32"):
        check_norm_range(np.array([1.0, 3e14]), "Q", np.float32, "f")
    with pytest.raises(ValueError, match="row 0 has norm inf"):
        check_norm_range(np.array([np.inf]), "Q", np.float64, "f")
