"""``toysae.interop.saelens_worlds``: SAELens's synthetic worlds as toysae data, checked
against the real sae-lens package (a dev dependency).

The wrapper's samples are SAELens's own sampling of the model under the same seed; a
toysae SAE trained on a SAELens world gets the same MCC, F1 and L0 from toysae's metrics
and SAELens's ``eval_sae_on_synthetic_data``; toysae's ``synth_sae_bench`` preset is
measured beside SAELens's published world (the parity test); bad sources are refused
before SAELens is asked for anything, and without sae-lens the error names the extra."""

import json
import sys
import warnings

import numpy as np
import pytest
import torch

from toysae import metrics
from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.interop import SAELensWorld, export_saelens, synth_sae_bench_config
from toysae.sae import ReLUSAE, TopKSAE, TrainConfig, train_sae
from toysae.sae.train_state import data_fingerprint


def _sae_lens():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("sae_lens", reason="sae-lens is a dev dependency")


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def small_config():
    """SynthSAEBench at 1/64: 256 features in d 12, two trees of 85 nodes."""
    _sae_lens()
    return synth_sae_bench_config(reduction=64, seed=3)


@pytest.fixture(scope="module")
def small_world(small_config):
    with torch_threads(1):
        return SAELensWorld(small_config)


def test_samples_are_saelens_own_sampling(small_world):
    from sae_lens.util import temporary_seed

    world, model = small_world, small_world.model
    batch = world.sample(500, seed=5)
    with temporary_seed(5):
        x, codes = model.sample_with_features(500)
    assert np.array_equal(batch.x, x.numpy()) and np.array_equal(batch.codes, codes.numpy())
    np.testing.assert_allclose(batch.x, batch.codes @ world.features + world.bias, atol=1e-4)
    assert np.array_equal(world.features, model.feature_dict.feature_vectors.detach().numpy())
    assert np.linalg.norm(world.bias) == pytest.approx(0.5, rel=1e-5)  # the published bias
    assert (world.d, world.n_features) == (12, 256) and batch.codes.dtype == np.float32
    # the unseeded stream: reproducible from the world's seed, each call new, and torch's
    # global random state untouched
    state = torch.random.get_rng_state()
    first, second = world.sample(200), world.sample(200)
    assert torch.equal(state, torch.random.get_rng_state())
    again = SAELensWorld(model, seed=0)
    assert np.array_equal(again.sample(200).codes, first.codes)
    assert not np.array_equal(first.codes, second.codes)
    assert not np.array_equal(SAELensWorld(model, seed=1).sample(200).codes, first.codes)


def test_a_saved_model_loads_as_the_same_world(small_world, tmp_path):
    small_world.model.save(tmp_path / "world")
    loaded = SAELensWorld(tmp_path / "world")
    assert np.array_equal(loaded.features, small_world.features)
    assert np.array_equal(loaded.sample(300, seed=2).codes, small_world.sample(300, seed=2).codes)
    assert loaded.hierarchy_pairs == small_world.hierarchy_pairs
    assert loaded.fingerprint() == small_world.fingerprint() == data_fingerprint(loaded)
    other = SAELensWorld(synth_sae_bench_config(reduction=64, seed=4))
    assert other.fingerprint() != small_world.fingerprint()


def test_hierarchy_pairs_are_saelens_tree_in_toysae_numbering(small_world):
    # SAELens numbers its tree breadth-first from 0 as toysae's generated tree does
    assert small_world.hierarchy_pairs == SyntheticConfig.synth_sae_bench(reduction=64).tree_pairs
    s = _sae_lens().synthetic
    flat = SAELensWorld(s.SyntheticModelConfig(num_features=20, hidden_dim=8, seed=0))
    assert flat.hierarchy_pairs == ()
    batch = flat.sample(50, seed=0)
    with pytest.raises(ValueError, match="hierarchy"):  # absorption needs a hierarchy
        metrics.absorption_rate(batch.codes, batch.codes, flat.features, flat.features,
                                flat.hierarchy_pairs)


def test_a_toysae_sae_on_a_saelens_world_scores_the_same_in_both(small_world, tmp_path):
    """Trained by toysae's engine on the world itself, exported, and scored by SAELens's
    eval on the samples of the same seed: MCC, F1, L0 (and the rest) agree to 1e-6 under
    SynthSAEBench's conventions (docs/interop.md)."""
    s = _sae_lens().synthetic
    world = small_world
    config = TrainConfig(n_samples=120_000, batch_size=256, lr=3e-3, log_every=100, seed=0)
    result = train_sae(TopKSAE(world.d, 64, k=3, seed=0), world, config, progress=False)
    assert result.success, result.message
    sae = result.sae.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_sae = _sae_lens().SAE.load_from_disk(str(export_saelens(sae, tmp_path / "sae")))
        torch.manual_seed(11)
        theirs = s.eval_sae_on_synthetic_data(theirs_sae, world.model.feature_dict,
                                              world.model.activation_generator,
                                              num_samples=4000)
    batch = world.sample(4000, seed=11)
    with torch.no_grad():
        codes = sae.encode(torch.from_numpy(batch.x)).numpy()
    D, F = sae.dictionary.detach().numpy(), world.features
    precision, recall, f1 = metrics.detection_scores(codes, batch.codes, F, D, absolute=True)
    ours = {"mcc": metrics.mcc(F, D, over="smaller"), "f1": f1.mean(),
            "precision": precision.mean(), "recall": recall.mean(), "l0": metrics.l0(codes),
            "true_l0": metrics.l0(batch.codes), "dead": metrics.dead_latents(codes).sum(),
            "uniqueness": metrics.uniqueness(F, D, absolute=True)}
    c = theirs.classification
    expected = {"mcc": theirs.mcc, "f1": c.f1_score, "precision": c.precision,
                "recall": c.recall, "l0": theirs.sae_l0, "true_l0": theirs.true_l0,
                "dead": theirs.dead_latents, "uniqueness": theirs.uniqueness}
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name
    # a trained SAE, not a trivial one (21 features per dimension: F1 is low at this size)
    assert 0.05 < ours["f1"] < 1 and 0.3 < ours["mcc"] < 1 and ours["l0"] == pytest.approx(3.0)
    # toysae's default MCC divides by the 256 features: a quarter of SAELens's at most
    assert metrics.mcc(F, D) == pytest.approx(ours["mcc"] * 64 / 256, rel=1e-9)


def test_an_sae_of_another_dimension_is_refused_before_training(small_world):
    sae = ReLUSAE(small_world.d + 1, 16, seed=0)
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    with pytest.raises(ValueError, match=r"data has d=12 but the SAE has d=13"):
        train_sae(sae, small_world, TrainConfig(n_samples=1024, batch_size=64), progress=False)
    assert all(torch.equal(before[k], v) for k, v in sae.state_dict().items())


# -- bad sources: refused before SAELens loads anything --------------------------------
def _saved(tmp_path, small_world):
    directory = tmp_path / "world"
    small_world.model.save(directory)
    return directory


def test_a_directory_that_is_not_a_synthetic_model_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    sae_dir = export_saelens(ReLUSAE(4, 8, seed=0), tmp_path / "an-sae")
    for source, match in [(tmp_path / "missing", "is not a directory"),
                          (tmp_path / "empty", "has no synthetic_model_config.json"),
                          (sae_dir, "SAELens SAE directory .*load_saelens")]:
        with pytest.raises(ValueError, match=f"source: .*{match}"):
            SAELensWorld(source)


@pytest.mark.parametrize("damage, match", [
    (lambda d: (d / "synthetic_model_config.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "synthetic_model_config.json").write_text('{"num_features": 0}'),
     "num_features is 0"),
    (lambda d: (d / "synthetic_model.safetensors").unlink(), "no synthetic_model.safetensors"),
    (lambda d: (d / "synthetic_model.safetensors").write_bytes(b"12345678"), "safetensors"),
])
def test_a_damaged_synthetic_model_is_refused(small_world, tmp_path, damage, match):
    directory = _saved(tmp_path, small_world)
    damage(directory)
    with pytest.raises(ValueError, match=match):
        SAELensWorld(directory)


def test_weights_that_do_not_fit_the_config_are_refused(small_world, tmp_path):
    directory = _saved(tmp_path, small_world)
    path = directory / "synthetic_model_config.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "hidden_dim": 13}))
    with pytest.raises(ValueError, match=r"feature_vectors has shape \(256, 12\).*hidden_dim=13"):
        SAELensWorld(directory)


def test_other_sources_and_seeds_are_refused(small_world):
    _sae_lens()
    with pytest.raises(TypeError, match="source must be a SAELens SyntheticModel"):
        SAELensWorld({"num_features": 4})
    with pytest.raises(ValueError, match="seed"):
        SAELensWorld(small_world.model, seed=-1)
    with pytest.raises(ValueError, match="n must be"):
        small_world.sample(0)
    with pytest.raises(ValueError, match="reduction"):
        synth_sae_bench_config(reduction=3)


def test_without_sae_lens_the_error_names_the_extra(small_world, tmp_path, monkeypatch):
    directory = _saved(tmp_path, small_world)
    for name in [m for m in sys.modules if m == "sae_lens" or m.startswith("sae_lens.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sae_lens", None)  # import sae_lens now fails
    for call in (lambda: SAELensWorld(directory), lambda: SAELensWorld(object()),
                 lambda: synth_sae_bench_config()):
        with pytest.raises(ImportError, match=r"pip install 'toysae\[dev\]'"):
            call()


# -- part 2: toysae's preset beside SAELens's published world ----------------------------
def _world_statistics(codes: np.ndarray, features: np.ndarray, pairs: tuple) -> dict:
    """The side-by-side statistics of a world: true L0, mean firing rate in index bands
    [0, 1), [1, 4), [4, 16), ... (the firing-rate law, read off the samples), pooled
    P(child fires | parent fires) over the tree's pairs, the tree's share of the features,
    and the mean |cos| between distinct features."""
    on = codes > 0
    rates = on.mean(axis=0)
    edges = [0] + [4**k for k in range(int(np.log(len(rates)) / np.log(4)) + 1)] + [len(rates)]
    bands = {f"rate[{a}:{b})": float(rates[a:b].mean())
             for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a}
    parent, child = np.array(pairs).T
    F = features / np.linalg.norm(features, axis=1, keepdims=True)
    cos = np.abs(F @ F.T)
    n = len(F)
    return {"true L0": float(on.sum(axis=1).mean()), **bands,
            "P(child | parent)": float((on[:, parent] & on[:, child]).sum()
                                       / on[:, parent].sum()),
            "tree share": len(set(parent) | set(child)) / n,
            "mean |cos|": float((cos.sum() - np.trace(cos)) / (n * (n - 1)))}


@pytest.mark.slow
def test_synth_sae_bench_matches_saelens_published_world():
    """At 1/8 of SynthSAEBench-16k (2,048 features in d 96, 16 trees of 85 nodes; SAELens
    orthogonalises its dictionary as published), 20,000 samples of each world: every
    statistic within 3%, and toysae's compensated own rates are SAELens's."""
    n = 20_000
    theirs = SAELensWorld(synth_sae_bench_config(reduction=8))
    ours = SyntheticData(SyntheticConfig.synth_sae_bench(reduction=8))
    assert ours.config.hierarchy_pairs == theirs.hierarchy_pairs
    np.testing.assert_allclose(ours.probabilities, theirs.probabilities, rtol=2e-6)
    a = _world_statistics(theirs.sample(n, seed=0).codes, theirs.features,
                          theirs.hierarchy_pairs)
    b = _world_statistics(ours.sample(n, seed=0).codes, ours.features, ours.hierarchy_pairs)
    print(f"\n{'statistic':20s} {'SAELens':>9s} {'toysae':>9s} {'toysae/SAELens':>15s}")
    for key in a:
        print(f"{key:20s} {a[key]:9.4f} {b[key]:9.4f} {b[key] / a[key]:15.4f}")
    off = {key: b[key] / a[key] - 1 for key in a if abs(b[key] / a[key] - 1) > 0.03}
    assert not off, f"more than 3% apart: {off}"


def test_building_a_world_is_quiet_and_keeps_what_saelens_said(capfd, caplog):
    """SAELens's orthogonalisation bar does not reach the terminal; its log line about the
    clamped compensation (this reduced tree clamps some) is kept on the world."""
    _sae_lens()
    capfd.readouterr()
    world = SAELensWorld(synth_sae_bench_config(reduction=64))
    out, err = capfd.readouterr()
    assert out == "" and err == "" and not caplog.records
    assert any("clamped" in m and m.startswith("warning: ") for m in world.build_messages)
    # a model passed in built has nothing to say
    assert SAELensWorld(world.model).build_messages == []
