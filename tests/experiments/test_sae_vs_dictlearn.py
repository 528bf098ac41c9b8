"""``toysae.experiments.sae_vs_dictlearn``: every method scored on equal terms: one row per toy
and method, each dictionary's objective per sample with optimal codes at the one common lam
(the SAE's L0/FVU from its encoder, every other's from those optimal codes), PCA/ICA capped
at d atoms; the table and files it writes; bad configs refused naming the field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toysae import experiments
from toysae.data import SyntheticConfig, SyntheticData
from toysae.dictionary_objective import dictionary_objective
from toysae.experiments import sae_vs_dictlearn
from toysae.metrics import fvu, l0, mmcs

CONFIG = sae_vs_dictlearn.Config(toys=("toy3d",), n_train=2048, n_eval=512, width_factor=1,
                                 sae_samples=8192, batch_size=256, baseline_samples=1024,
                                 ica_max_iter=50)


@pytest.fixture(scope="module")
def scored():
    """The run, with every optimal-code solve it made: (X_eval, D, lam, solver result)."""
    solves = []
    original = sae_vs_dictlearn.sparse_code

    def recorded(X, D, lam, **kwargs):
        out = original(X, D, lam, **kwargs)
        solves.append((np.array(X), np.array(D), lam, out))
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sae_vs_dictlearn, "sparse_code", recorded)
        result = sae_vs_dictlearn.run(CONFIG)
    return result, solves


def test_one_row_per_method_with_its_atoms(scored):
    result, solves = scored
    assert [(s.toy, s.method) for s in result.scores] == [
        ("toy3d", m) for m in sae_vs_dictlearn.METHODS]
    atoms = {s.method: s.n_atoms for s in result.scores}
    assert atoms == {"sae": 6, "bcd": 6, "mod": 6, "ksvd": 6, "pca": 3, "ica": 3, "kmeans": 6}
    assert [D.shape[0] for _, D, _, _ in solves] == list(atoms.values())
    for s in result.scores:
        assert 0 <= s.mmcs_true_to_learned <= 1 and 0 <= s.mmcs_learned_to_true <= 1
        assert 0 <= s.mcc <= 1 and s.wall_time >= 0 and s.dead >= 0


def test_every_dictionary_is_scored_with_optimal_codes_at_the_common_lam(scored):
    result, solves = scored
    truth = SyntheticData(SyntheticConfig.toy_3d(seed=CONFIG.seed)).features
    X0 = solves[0][0]
    for score, (X, D, lam, coded) in zip(result.scores, solves, strict=True):
        assert lam == CONFIG.lam and np.array_equal(X, X0)  # the same held-out samples
        assert coded.success, score.method
        # the solver sums its residual in its own order: agreement to rounding, not bits
        assert score.objective == pytest.approx(
            dictionary_objective(X, D, coded.codes, lam) / X.shape[0], rel=1e-6)
        assert score.mmcs_true_to_learned == pytest.approx(mmcs(truth, D), rel=1e-12)
        if score.method != "sae":  # the SAE is read through its own encoder instead
            assert score.l0 == pytest.approx(l0(coded.codes), rel=1e-12)
            assert score.fvu == pytest.approx(fvu(X, coded.codes @ D), rel=1e-9)
    by = {s.method: s for s in result.scores}
    # BCD minimises this very objective with 6 atoms; PCA has the toy's 3 directions
    assert by["bcd"].objective < by["pca"].objective


def test_writes_its_table_json_and_figure(scored, tmp_path):
    result, _ = scored
    paths = experiments.save_outputs(sae_vs_dictlearn, result, tmp_path)
    assert [p.name for p in paths] == ["sae-vs-dictlearn.json", "sae-vs-dictlearn.md",
                                       "sae-vs-dictlearn.png"]
    numbers = json.loads(paths[0].read_text())
    assert [s["method"] for s in numbers["scores"]] == list(sae_vs_dictlearn.METHODS)
    assert sae_vs_dictlearn.Config.from_dict(numbers["config"]) == CONFIG
    lines = paths[1].read_text().splitlines()
    assert len(lines) == 2 + len(result.scores) and lines[0].startswith("| toy | method |")
    assert lines[3].startswith("| toy3d | bcd | 6 | ")
    assert paths[2].stat().st_size > 20_000


def test_bad_configs_are_refused_naming_the_field():
    with pytest.raises(ValueError, match="^methods"):
        sae_vs_dictlearn.Config(methods=("sae", "lasso"))
    with pytest.raises(ValueError, match="^toys"):
        sae_vs_dictlearn.Config(toys=("mnist",))
    with pytest.raises(ValueError, match="^lam must be > 0"):
        sae_vs_dictlearn.Config(lam=0.0)
    with pytest.raises(ValueError, match="^n_train must be >= 100"):
        sae_vs_dictlearn.Config(n_train=10)
