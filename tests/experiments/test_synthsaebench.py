"""``toysae.experiments.synthsaebench``: SAELens's world at the paper's L0s over seeds, the
presets of its two scales (the paper's run end to end at a tiny size), the paper's
pairwise orders called only where intervals separate, kept runs, outputs, bad config.
Needs the real sae-lens (a dev dependency)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from toysae._threads import torch_threads
from toysae.experiments import save_outputs
from toysae.experiments import synthsaebench as sb
from toysae.stats import mean_interval

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    pytest.importorskip("sae_lens", reason="sae-lens is a dev dependency")

ARCHS = ("matryoshka", "batchtopk", "relu", "matching_pursuit")


def _tiny(**changes) -> sb.Config:
    base = dict(reduction=64, architectures=ARCHS, seeds=(0, 1), paper_l0s=(25.0, 40.0),
                n_train=8192, n_samples=64_000, lr=3e-3, n_eval=2048, batch_size=64)
    return sb.Config(**{**base, **changes})


@pytest.fixture(scope="module")
def result():
    with torch_threads(1):
        return sb.run(_tiny())


def test_every_architecture_runs_at_every_seed_and_target(result):
    w = result.world
    assert (w["n_features"], w["d"], result.width) == (256, 12, 64)
    assert w["n_hierarchy_pairs"] > 0 and len(w["blake2b"]) == 32
    assert result.prefix_sizes == (2, 8, 32, 64)  # the paper's 128, 512, 2048 of 4096
    assert result.targets == tuple(round(l0 * w["true_l0"] / sb.PAPER_TRUE_L0)
                                   for l0 in (25.0, 40.0))
    assert [(r.name, r.seed, r.target_l0) for r in result.runs] == [
        (n, s, t) for t in result.targets for n in ARCHS for s in (0, 1)]
    for r in result.runs:
        if r.name == "relu":  # the controller's, from a start scaled to the data
            assert r.k is None and r.trained, r.train_message
            assert abs(r.l0_error) <= 0.1  # the controller needs ~1,000 steps: 1,000 here
        else:
            assert r.k == r.target_l0 and r.sparsity_coef is None
        assert 0 <= r.mcc <= 1 and 0 <= r.f1 <= 1 and 0 < r.uniqueness <= 1
        assert 0 <= r.absorption <= 1 and 0 <= r.dead <= result.width and r.wall_time > 0
    # SynthSAEBench's MCC averages over the smaller set: well above 0.25, where an MCC over
    # the 256 features would cap a 64-wide SAE
    assert all(r.mcc > 0.4 for r in result.runs)
    relu = [r for r in result.runs if r.name == "relu" and r.target_l0 == result.targets[0]]
    assert relu[0].mcc != relu[1].mcc  # seeds are different runs


def test_summaries_are_the_seed_means_with_t_intervals(result):
    s = next(x for x in result.summaries if x.name == "batchtopk")
    runs = [r for r in result.runs if r.name == "batchtopk" and r.target_l0 == s.target_l0]
    assert s.seeds == (0, 1)
    assert s.interval("f1") == mean_interval([r.f1 for r in runs])
    assert len(result.orders) == 2 * len(result.targets)
    assert result.orders[0].startswith(f"At L0 {result.targets[0]}: of the paper's")
    assert "pairwise F1 orders" in result.orders[0] and "MCC" in result.orders[1]


def test_the_presets_give_the_cpu_and_the_paper_run():
    cpu, paper = sb.Config().settings(), sb.Config(scale="paper").settings()
    assert (cpu["reduction"], cpu["width"], cpu["n_train"]) == (4, 1024, 524_288)
    assert (paper["reduction"], paper["width"], paper["n_train"]) == (1, 4096, 0)
    assert (paper["n_samples"], paper["lr"]) == (200_000_000, 3e-4)
    # a field set wins over the preset
    assert sb.Config(scale="paper", reduction=8).settings()["width"] == 512
    assert sb.Config(width=300).settings()["width"] == 300
    assert sb.prefix_sizes(4096) == (128, 512, 2048, 4096)
    assert sb.prefix_sizes(1024) == (32, 128, 512, 1024)
    # the paper's L0s at its own world's true L0, and at the CPU world's
    assert sb.targets_of(sb.Config(), 34.5) == (20, 25)
    assert sb.targets_of(sb.Config(), 16.04) == (9, 12)


def test_the_paper_scale_runs_end_to_end_at_a_tiny_size():
    """scale=paper: no fixed set (every batch a fresh sample of the world) at the paper's
    lr, here at 1/64 and a few thousand samples."""
    config = sb.Config(scale="paper", reduction=64, architectures=("batchtopk", "jumprelu"),
                       seeds=(0,), paper_l0s=(25.0,), n_samples=8192, n_eval=1024,
                       batch_size=256)
    with torch_threads(1):
        out = sb.run(config)
    assert out.settings["n_train"] == 0 and out.settings["lr"] == 3e-4
    assert [r.name for r in out.runs] == ["batchtopk", "jumprelu"]
    assert all(np.isfinite(r.explained_variance) for r in out.runs)
    assert "1 seed" in out.orders[0]  # nothing is called at one seed



def test_paper_orders_call_an_order_only_where_intervals_separate():
    by = {name: mean_interval(values) for name, values in [
        ("matryoshka", [0.9, 0.91, 0.92]), ("batchtopk", [0.5, 0.51, 0.52]),
        ("relu", [0.6, 0.61, 0.62]), ("matching_pursuit", [0.3, 0.7, 0.5])]}
    f1 = sb.paper_orders(by, "f1", 12)
    # the paper's F1 order: matryoshka > batchtopk > relu > matching_pursuit (6 pairs)
    assert f1.startswith("At L0 12: of the paper's 6 pairwise F1 orders among matryoshka, "
                         "batchtopk, relu, matching_pursuit, 2 reproduced, 1 reversed and 3 "
                         "not resolved at 3 seeds")
    assert "Reversed here: batchtopk > relu." in f1
    assert "matryoshka > relu" in f1 and "matryoshka > batchtopk" in f1
    # by MCC the paper puts matching_pursuit (0.693) above relu (0.604)
    mcc = sb.paper_orders(by, "mcc", 12)
    assert "among matryoshka, batchtopk, matching_pursuit, relu" in mcc
    # the paper ties batchtopk and jumprelu on F1: that pair is skipped
    tied = sb.paper_orders({"batchtopk": mean_interval([0.5, 0.6]),
                            "jumprelu": mean_interval([0.1, 0.2])}, "f1", 9)
    assert "of the paper's 0 pairwise" in tied
    assert "fewer than two" in sb.paper_orders({"relu": mean_interval([0.5, 0.6])}, "f1", 9)
    with pytest.raises(ValueError, match="metric"):
        sb.paper_orders(by, "ev", 9)


def test_kept_runs_are_reused_and_a_larger_run_trains_only_what_is_new(tmp_path, monkeypatch):
    config = _tiny(architectures=("batchtopk",), seeds=(0,), paper_l0s=(25.0,),
                   n_samples=4096, work_dir=str(tmp_path))
    trained = []
    real = sb._run_one

    def counting(name, seed, target, *args):
        trained.append((name, seed))
        return real(name, seed, target, *args)

    drawn = []
    real_data = sb._World.training_data

    def drawing(world):
        drawn.append(len(trained))
        return real_data(world)

    monkeypatch.setattr(sb, "_run_one", counting)
    monkeypatch.setattr(sb._World, "training_data", drawing)
    with torch_threads(1):
        first = sb.run(config)
        again = sb.run(config)  # every run kept: no training set is drawn
        wider = sb.run(sb.Config.from_dict({**config.to_dict(), "seeds": [0, 1]}))
    assert trained == [("batchtopk", 0), ("batchtopk", 1)]
    assert drawn == [1, 2]  # once for the first run, once for the new seed
    assert again.runs == first.runs and wider.runs[0] == first.runs[0]
    kept = list(tmp_path.rglob("*.json"))
    assert len(kept) == 2 and all("commit" in json.loads(p.read_text()) for p in kept)


def test_outputs_are_written(result, tmp_path):
    paths = save_outputs(sb, result, tmp_path)
    assert sorted(p.suffix for p in paths) == [".json", ".md", ".png"]
    text = (tmp_path / f"{sb.NAME}.md").read_text()
    assert "| matryoshka | " in text and "0.879 / 0.793" in text
    assert "## The paper's orders" in text and "## Findings" in text
    back = json.loads((tmp_path / f"{sb.NAME}.json").read_text())
    summary = sb.report_tables(back)["summary"]  # what toysae report renders from the JSON
    relu = next(s for s in result.summaries if s.name == "relu")
    assert relu.interval("f1").format(3) in summary and relu.interval("l0").format(2) in summary
    assert summary.count("\n| ") == len(result.summaries) + 1  # header and one row each


@pytest.mark.parametrize("changes, error, match", [
    ({"scale": "gpu"}, ValueError, "scale must be one of"),
    ({"reduction": 3}, ValueError, "reduction must divide 128"),
    ({"reduction": 0}, ValueError, "reduction must be >= 1"),
    ({"width": 300}, ValueError, "width must be <= the world's 256 features"),
    ({"n_train": 32}, ValueError, "n_train must be 0"),
    ({"device": "tpu"}, ValueError, "device"),
    ({"device": "not a device"}, ValueError, "device must be a torch device"),
    ({"architectures": ("relu", "pca")}, ValueError, r"architectures\[1\]"),
    ({"architectures": ("relu", "relu")}, ValueError, "architectures must not repeat"),
    ({"seeds": (0, 0)}, ValueError, "seeds must not repeat"),
    ({"paper_l0s": (0.0,)}, ValueError, r"paper_l0s\[0\]"),
    ({"paper_l0s": (25.0, 25.0)}, ValueError, "paper_l0s must not repeat"),
    ({"n_samples": 2.5}, TypeError, "n_samples must be an int"),
])
def test_bad_config_is_refused(changes, error, match):
    with pytest.raises(error, match=match):
        _tiny(**changes)
