"""``toysae.experiments.hedging``: the truth's masses and the pure dictionary on hand-made
decoders with known answers, the objective test's sign on hand-made data, the extension of
an SAE, the experiment end to end at a tiny size (units, cells, findings, outputs, kept
units), and bad configs refused naming the field."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from toysae import metrics
from toysae._threads import torch_threads
from toysae.data import SyntheticConfig
from toysae.experiments import hedging as hd
from toysae.experiments import save_outputs
from toysae.sae import make_sae
from toysae.stats import mean_interval


def _small(**changes) -> hd.Config:
    base = dict(data=hd.orthogonal_world(16), width_fractions=(0.5, 1.0),
                correlations=(0.0, 0.9), seeds=(0, 1), n_new=2, n_train=4096,
                n_initial=40_000, n_continue=20_000, batch_size=128, lr=1e-2, n_eval=512,
                n_check=256, n_baselines=10, n_boot=200)  # lr: few steps to converge in
    return hd.Config(**{**base, **changes})


@pytest.fixture(scope="module")
def result():
    with torch_threads(1):
        return hd.run(_small())


# -- the truth on hand-made decoders --------------------------------------------------------------
F = np.eye(5)[:4]  # four orthonormal features in d = 5: e4 is no feature's direction


def test_a_latent_with_mass_on_a_feature_no_latent_tracks_hedges_by_that_mass():
    D = np.stack([F[0],                                   # tracks f0
                  0.8 * F[1] + 0.6 * F[3],                # f1 at 0.8 < 0.9: nobody tracks f1, f3
                  F[2],                                   # tracks f2
                  np.sqrt(0.95) * F[2] + np.sqrt(0.05) * F[0],  # f2 again, a little of f0
                  0.6 * F[0] + 0.8 * np.eye(5)[4]])       # dead: tracks nothing
    alive = np.array([1, 1, 1, 1, 0], bool)
    best, tracked = hd.feature_tracking(3.0 * D, F, alive, 0.9)  # rows normalised
    assert best.tolist() == [0, 1, 2, 2, 0] and tracked.tolist() == [1, 0, 1, 0]
    masses = hd.latent_masses(D, F, best, tracked)
    np.testing.assert_allclose(masses["hedging"], [0, 0.36, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(masses["interference"], [0, 0, 0, 0.05, 0], atol=1e-12)
    # all the dead latent is not: 1 - 0.36, outside the features' span, neither kind
    np.testing.assert_allclose(masses["off_feature"], [0, 0.36, 0, 0.05, 0.64], atol=1e-12)
    # its own untracked feature is no latent's hedging: only the others' mass counts
    assert masses["hedging"][1] == pytest.approx(0.6 ** 2)


def test_pure_features_hedge_not_at_all_in_any_sign_or_order():
    D = np.stack([-F[2], F[0], F[3]])
    best, tracked = hd.feature_tracking(D, F, np.ones(3, bool), 0.9)
    assert best.tolist() == [2, 0, 3] and tracked.tolist() == [1, 0, 1, 1]
    for value in hd.latent_masses(D, F, best, tracked).values():
        np.testing.assert_allclose(value, 0.0, atol=1e-15)


def test_the_truth_refuses_features_that_are_not_orthonormal_and_bad_masks():
    with pytest.raises(ValueError, match="features must be orthonormal"):
        hd.feature_tracking(F[:2], F + 0.1, np.ones(2, bool), 0.9)
    with pytest.raises(ValueError, match=r"alive must have shape \(2,\)"):
        hd.feature_tracking(F[:2], F, np.ones(3, bool), 0.9)
    with pytest.raises(ValueError, match="threshold"):
        hd.feature_tracking(F[:2], F, np.ones(2, bool), 1.5)
    with pytest.raises(ValueError, match="decoder has 1 zero row"):
        hd.feature_tracking(np.stack([F[0], np.zeros(5)]), F, np.ones(2, bool), 0.9)


def test_the_pure_dictionary_replaces_each_latent_with_a_feature_of_its_own():
    D = np.stack([0.8 * F[0] + 0.6 * F[1],   # best f0, its alone: -> f0
                  -(0.6 * F[2] + 0.8 * F[3]),  # best f3, negative: -> -f3
                  0.9 * F[2] + np.sqrt(0.19) * F[1],  # best f2 ...
                  0.95 * F[2] + np.sqrt(0.0975) * F[0],  # ... shared: both kept
                  F[1]])                     # dead: kept
    alive = np.array([1, 1, 1, 1, 0], bool)
    pure, replaced = hd.pure_dictionary(D, F, alive)
    assert replaced.tolist() == [True, True, False, False, False]
    np.testing.assert_allclose(pure[:2], [F[0], -F[3]], atol=1e-15)
    np.testing.assert_allclose(pure[2:], D[2:] / np.linalg.norm(D[2:], axis=1)[:, None])


def test_the_objective_prefers_the_hedged_atom_where_its_features_fire_together():
    """One latent, two features: where f1 fires with f0 at half its size in every sample,
    the atom along f0 + f1 / 2 reconstructs what f0 alone leaves; where f1 never fires,
    f0 is the better atom."""
    a = np.random.default_rng(0).uniform(0.5, 1.5, size=(200, 1))
    hedged = np.array([[1.0, 0.5, 0.0]]) / np.sqrt(1.25)
    features = np.eye(3)[:2]
    pure, replaced = hd.pure_dictionary(hedged, features, np.ones(1, bool))
    assert replaced.all() and np.allclose(pure, [[1.0, 0.0, 0.0]])
    together = a * np.array([[1.0, 0.5, 0.0]])
    test = hd.objective_test(together, hedged, pure, 0.05, np.zeros(3))
    assert test["converged"] and test["hedged"] < test["pure"]
    assert test["pure"] - test["hedged"] == pytest.approx(
        0.5 * np.mean((0.5 * a) ** 2), rel=0.05)  # about what f0 alone leaves unexplained
    alone = a * np.array([[1.0, 0.0, 0.0]])
    test = hd.objective_test(alone, hedged, pure, 0.05, np.zeros(3))
    assert test["pure"] < test["hedged"]


# -- the extension ------------------------------------------------------------------------------
def test_an_extended_sae_keeps_its_latents_and_adds_the_architectures_own():
    sae = make_sae("relu", 6, 4, seed=3)
    with torch.no_grad():
        sae.b_enc.fill_(0.25)
        sae.b_dec.fill_(-0.5)
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    wide = hd.extend_sae(sae, 3, seed=11)
    fresh = make_sae("relu", 6, 7, seed=11)
    assert wide.width == 7 and wide.seed == 11
    torch.testing.assert_close(wide.W_dec[:4], sae.W_dec, rtol=0, atol=0)
    torch.testing.assert_close(wide.W_enc[:, :4], sae.W_enc, rtol=0, atol=0)
    torch.testing.assert_close(wide.b_enc[:4], sae.b_enc, rtol=0, atol=0)
    torch.testing.assert_close(wide.b_dec, sae.b_dec, rtol=0, atol=0)
    torch.testing.assert_close(wide.W_dec[4:], fresh.W_dec[4:], rtol=0, atol=0)
    torch.testing.assert_close(wide.W_enc[:, 4:], fresh.W_enc[:, 4:], rtol=0, atol=0)
    assert (wide.b_enc[4:] == 0).all()
    for k, v in sae.state_dict().items():  # the narrow SAE is left as it was
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    x = torch.randn(5, 6)
    with torch.no_grad():  # its own latents compute what they did
        torch.testing.assert_close(wide.encode(x)[:, :4], sae.encode(x))
    with pytest.raises(ValueError, match="n_new must be >= 1"):
        hd.extend_sae(sae, 0, seed=1)
    with pytest.raises(TypeError, match="n_new must be an int"):
        hd.extend_sae(sae, 2.0, seed=1)
    with pytest.raises(TypeError, match="sae must be a SparseAutoencoder"):
        hd.extend_sae(torch.nn.Linear(2, 2), 1, seed=1)


# -- the experiment at a tiny size ---------------------------------------------------------------
def test_every_unit_runs_and_its_numbers_hold_together(result):
    cfg = result.config
    assert result.widths == (8, 16)
    assert [(r.correlation, r.width, r.seed) for r in result.runs] == [
        (c, w, s) for c in cfg.correlations for w in result.widths for s in cfg.seeds]
    assert [(c.correlation, c.width) for c in result.cells] == [
        (c, w) for c in cfg.correlations for w in result.widths]
    assert [w.correlation for w in result.worlds] == [0.0, 0.9]
    assert result.worlds[0].copula_max == 0 and result.worlds[1].copula_max > 0.3
    for r in result.runs:
        for kind in ("", "encoder_"):
            h, i, o = (getattr(r, kind + k) for k in ("hedging", "interference", "off_feature"))
            assert 0 <= h and 0 <= i and h + i <= o + 1e-6 and o <= 1  # features in float32
        assert 0 <= r.degree <= 1 and r.baseline_portion < 1
        assert 0 < r.n_alive <= r.width and r.n_replaced <= r.n_alive
        assert r.objective_gap == r.objective_hedged - r.objective_pure
        assert r.solves_converged and r.lam > 0 and r.pairs_checked > 0
        assert r.extended_l0 > 0 and r.delta_norm > 0
    # seeds are different runs; independent firing hedges less than correlated at the narrow
    # width (each seed: the claim at its smallest)
    assert len({r.objective_hedged for r in result.runs}) == len(result.runs)
    for seed in cfg.seeds:
        pick = {r.correlation: r for r in result.runs if (r.width, r.seed) == (8, seed)}
        assert pick[0.0].hedging < pick[0.9].hedging
        assert pick[0.0].degree < pick[0.9].degree


def test_cells_summarise_their_seeds(result):
    for c in result.cells:
        mine = [r for r in result.runs if (r.correlation, r.width) == (c.correlation, c.width)]
        assert c.seeds == (0, 1) and c.width_fraction in (0.5, 1.0)
        for metric in hd.SUMMARISED:
            assert c.interval(metric) == mean_interval([getattr(r, metric) for r in mine])
        assert c.atoms_passed == sum(r.atoms_passed for r in mine)
        assert c.converged == 2
    assert result.tracking.n == len(result.cells)


def test_findings_carry_intervals_and_seed_counts(result):
    text = " ".join(result.findings)
    narrow = next(c for c in result.cells if (c.correlation, c.width) == (0.9, 8))
    assert (f"At correlation 0.9 (2 seeds, 95% t intervals), the truth hedging of the decoder "
            f"is {narrow.interval('hedging')} at width 8 (0.5x)") in text
    assert "Over the 4 (correlation, width) cells (2 seeds each)" in text
    assert "F(hedged) - F(pure), the objective per sample" in text
    assert f"{narrow.interval('objective_gap').format(5)}" in text
    assert "of 8 control decoders" in text and "converged in 8 of 8 units" in text


def test_outputs_are_written(result, tmp_path):
    paths = save_outputs(hd, result, tmp_path)
    assert sorted(p.suffix for p in paths) == [".json", ".md", ".png"]
    text = (tmp_path / f"{hd.NAME}.md").read_text()
    assert "## Findings" in text and result.findings[0] in text
    back = json.loads((tmp_path / f"{hd.NAME}.json").read_text())
    assert back["runs"][0]["degree"] == result.runs[0].degree
    summary = hd.report_tables(back)["summary"]  # what toysae report renders from the JSON
    rows = summary.split("\n")[4:]
    assert len(rows) == len(result.cells)
    c = result.cells[0]
    assert rows[0] == (f"| 0 | 8 (0.5x) | {c.interval('l0').format(2)} | "
                       f"{c.interval('hedging').format(3)} | "
                       f"{c.interval('encoder_hedging').format(3)} | "
                       f"{c.interval('degree').format(3)} | "
                       f"{c.interval('objective_gap').format(5)} | {c.atoms_passed} of 2 |")
    assert summary == hd.summary_table(result.cells, 2)
    caption = hd.caption(back)
    assert caption.startswith("Over the 4 (correlation, width) cells") and "F(hedged)" in caption


def test_kept_units_are_reused_and_more_seeds_train_only_the_new(tmp_path, monkeypatch):
    config = _small(correlations=(0.9,), width_fractions=(0.5,), work_dir=str(tmp_path))
    trained = []
    real = hd._unit

    def counting(correlation, width, seed, *args):
        trained.append((correlation, width, seed))
        return real(correlation, width, seed, *args)

    monkeypatch.setattr(hd, "_unit", counting)
    with torch_threads(1):
        first = hd.run(config)
        assert len(trained) == 2
        again = hd.run(config)
        assert len(trained) == 2 and again.runs == first.runs and again.cells == first.cells
        wider = hd.run(dataclasses.replace(config, seeds=(0, 1, 2), n_boot=300))
    assert trained[2:] == [(0.9, 8, 2)]
    assert wider.runs[:2] == first.runs
    assert len(list(tmp_path.rglob("r0.9-w8-seed*.json"))) == 3


def test_the_quick_config_is_the_demo_size():
    quick = hd.Config.quick()
    assert quick.widths == (8, 16, 32) and len(quick.seeds) == 2
    assert hd.Config().widths == (8, 16, 32, 64)


@pytest.mark.parametrize("changes, error, match", [
    ({"width_fractions": ()}, ValueError, "width_fractions must not be empty"),
    ({"width_fractions": (0.0, 0.5)}, ValueError, r"width_fractions\[0\]"),
    ({"width_fractions": (0.5, 1.5)}, ValueError, r"width_fractions\[1\]"),
    ({"width_fractions": (1.0, 0.5)}, ValueError, "width_fractions must be strictly increasing"),
    ({"width_fractions": (0.5, 0.52)}, ValueError, r"round to the widths \[8, 8\]"),
    ({"correlations": ()}, ValueError, "correlations must not be empty"),
    ({"correlations": (0.5, 1.0)}, ValueError, r"correlations\[1\]"),
    ({"correlations": (-0.1,)}, ValueError, r"correlations\[0\]"),
    ({"correlations": (0.6, 0.3)}, ValueError, "correlations must be strictly increasing"),
    ({"seeds": (0,)}, ValueError, "seeds must hold at least 2"),
    ({"seeds": (1, 1)}, ValueError, "seeds must not repeat"),
    ({"n_new": 0}, ValueError, "n_new"),
    ({"n_new": 16}, ValueError, r"n_new must be < data.d \(16\)"),
    ({"data": SyntheticConfig(d=16, n_features=16, correlation="low_rank")}, ValueError,
     "data.orthogonal must be True"),
    ({"data": dataclasses.replace(hd.orthogonal_world(16), correlation="none")}, ValueError,
     "data.correlation must be 'low_rank'"),
    ({"data": dataclasses.replace(hd.orthogonal_world(16), correlation_strength=0.3)},
     ValueError, "data.correlation_strength must be 0"),
    ({"n_check": 1024}, ValueError, r"n_check must be <= n_eval \(512\)"),
    ({"n_train": 64}, ValueError, r"n_train must be >= batch_size \(128\)"),
    ({"sparsity_coef": 0.0}, ValueError, "sparsity_coef"),
    ({"n_new": "8"}, TypeError, "n_new"),
])
def test_bad_config_is_refused_naming_the_field(changes, error, match):
    with pytest.raises(error, match=match):
        _small(**changes)


def test_the_degree_of_a_unit_is_the_metric_of_its_decoders(monkeypatch):
    """The unit hands the metric the control's decoder and the trained extended SAE's, unit
    rows with its original latents first, and records the metric's degree."""
    real = hd.extend_sae
    seen = {}

    def spy(sae, n_new, seed):
        wide = real(sae, n_new, seed)
        seen["wide"] = wide
        return wide

    monkeypatch.setattr(hd, "extend_sae", spy)
    calls = []
    degree = metrics.hedging_degree

    def recording(control, extended, **kwargs):
        calls.append((np.array(control), np.array(extended)))
        return degree(control, extended, **kwargs)

    monkeypatch.setattr(hd.metrics, "hedging_degree", recording)
    config = _small(correlations=(0.9,), width_fractions=(0.5,))
    with torch_threads(1):
        world = hd._world(0.9, config)
        run = hd._unit(0.9, 8, 0, world, config)
    control, extended = calls[0]
    assert control.shape == (8, 16) and extended.shape == (10, 16)
    np.testing.assert_allclose(np.linalg.norm(extended, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(extended, seen["wide"].dictionary.numpy(), atol=1e-6)
    assert run.degree == degree(control, extended, n_baselines=10, seed=0).degree


def test_masses_below_the_printed_resolution_are_not_compared():
    from toysae.experiments.hedging import MASS_RESOLUTION, _versus
    from toysae.stats import mean_interval

    tiny, zero = mean_interval([2e-5, 3e-5, 2.5e-5]), mean_interval([0.0, 0.0, 0.0])
    assert _versus(tiny, zero, "grows", "shrinks", MASS_RESOLUTION).startswith("none at either")
    # the same separation one scale up is a finding
    big = mean_interval([0.2, 0.3, 0.25])
    assert _versus(big, zero, "grows", "shrinks", MASS_RESOLUTION) == "grows"
    assert _versus(tiny, zero, "grows", "shrinks") == "grows"
