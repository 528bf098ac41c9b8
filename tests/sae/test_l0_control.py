"""``toysae.sae.l0_control`` and ``TrainConfig(target_l0=...)``: every architecture with a
penalty ends within 3% of its target L0 on the reference toy and on synth_small, and does
not without the controller; a controlled run resumes bit-identically; a target out of
reach is reported; bad targets are refused before any work."""

import math

import numpy as np
import pytest
import torch

from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae import ARCHITECTURES, TrainConfig, make_sae, train_grid, train_sae
from toysae.sae.l0_control import MISS_TOLERANCE, SMOOTHING, L0Controller
from toysae.sae.train_state import read_train_state

PENALTY_ARCHITECTURES = sorted(n for n, cls in ARCHITECTURES.items() if cls.penalty_kind != "none")
K_ARCHITECTURES = sorted(n for n, cls in ARCHITECTURES.items() if cls.penalty_kind == "none")
# Starts well below the coefficient each target needs (relu/tied/gated ~0.08, jumprelu
# ~0.006 on the unit-scale reference toy at L0 5), so the uncontrolled L0 is far too high.
LOW_START = {"l1": 0.03, "l0": 0.001}
FAST = dict(batch_size=256, lr=3e-3)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):
        yield


def unit_scale(data: SyntheticData, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) samples divided by the training set's sqrt(mean ||x||^2)."""
    X = data.sample(n, seed=seed).x
    scale = math.sqrt(float((X.astype(np.float64) ** 2).sum(1).mean()))
    held = data.sample(8192, seed=seed + 1).x
    return (X / scale).astype(np.float32), (held / scale).astype(np.float32)


@pytest.fixture(scope="module")
def reference_toy():
    return unit_scale(SyntheticData(SyntheticConfig()), 65_536, seed=11)


@pytest.fixture(scope="module")
def synth_small():
    return unit_scale(SyntheticData(SyntheticConfig.synth_small()), 65_536, seed=12)


def held_out_l0(sae, X: np.ndarray) -> float:
    with torch.no_grad():
        return float((sae.encode(torch.from_numpy(X)) != 0).sum(1).double().mean())


def start_coef(name: str) -> float:
    return LOW_START[ARCHITECTURES[name].penalty_kind]


@pytest.mark.parametrize("name", PENALTY_ARCHITECTURES)
def test_the_reference_toy_ends_at_its_target_and_would_not_without_control(
        name, reference_toy):
    X, held = reference_toy
    config = TrainConfig(n_samples=300_000, target_l0=5.0, sparsity_coef=start_coef(name),
                         **FAST)
    result = train_sae(name, X, config, width=64, progress=False)
    assert result.success, result.message
    assert held_out_l0(result.sae, held) == pytest.approx(5.0, rel=0.03)
    switched_off = train_sae(name, X, config.replace(l0_gain=0.0), width=64, progress=False)
    assert held_out_l0(switched_off.sae, held) > 5.0 * 1.2
    assert switched_off.final_sparsity_coef == pytest.approx(config.sparsity_coef, rel=1e-12)
    assert not switched_off.success and "not reached" in switched_off.message


@pytest.mark.parametrize("name", PENALTY_ARCHITECTURES)
def test_synth_small_ends_at_its_true_l0(name, synth_small):
    X, held = synth_small
    target = 11.0  # synth_small's true L0 is 10.6
    config = TrainConfig(n_samples=500_000, target_l0=target, sparsity_coef=start_coef(name),
                         **FAST)
    result = train_sae(name, X, config, width=256, progress=False)
    assert result.success, result.message
    assert held_out_l0(result.sae, held) == pytest.approx(target, rel=0.03)


def test_the_coefficient_holds_through_the_warmup_then_moves_and_is_recorded(
        reference_toy, tmp_path):
    X, _ = reference_toy
    config = TrainConfig(n_samples=256 * 400, target_l0=5.0, sparsity_coef=0.03,
                         sparsity_warmup=0.25, log_every=10, **FAST)
    path = tmp_path / "run.safetensors"
    result = train_sae("relu", X, config, width=64, progress=False, checkpoint_every=1000,
                       checkpoint_path=path)
    h = result.history
    # control begins after the warm-up's last step (100), so that row shows its first move
    warm = [(s, c) for s, c in zip(h["step"], h["sparsity_coef"], strict=True) if s < 100]
    # during the warm-up the logged coefficient is the start times the ramp, exactly
    assert all(c == pytest.approx(0.03 * s / 100, rel=1e-6) for s, c in warm)
    after = h["sparsity_coef"][len(warm):]
    assert after[-1] > 2 * 0.03  # it rose towards the ~0.08 that L0 5 needs
    assert result.final_sparsity_coef == pytest.approx(after[-1], rel=1e-6)
    assert result.sparsity_coef == 0.03 and result.config.sparsity_coef == 0.03
    _, tensors = read_train_state(path)
    assert math.exp(float(tensors["l0_control.log_coef"][0])) == result.final_sparsity_coef


def test_a_resumed_controlled_run_is_bit_identical(reference_toy, tmp_path):
    X, _ = reference_toy
    config = TrainConfig(n_samples=256 * 300, target_l0=5.0, sparsity_coef=0.03,
                         log_every=25, resample_every=50, dead_window=20, **FAST)
    whole = train_sae("jumprelu", X, config, width=64, progress=False)

    class Interrupt(Exception):
        pass

    calls = []

    def stop_at_fourth_log(sae):
        calls.append(1)
        if len(calls) == 4:
            raise Interrupt
        return {}

    path = tmp_path / "run.safetensors"
    with pytest.raises(Interrupt):
        train_sae("jumprelu", X, config, width=64, progress=False, eval_fn=stop_at_fourth_log,
                  checkpoint_every=70, checkpoint_path=path)
    state, _ = read_train_state(path)
    assert state["n_iter"] == 70  # after control began (warm-up: 15 steps)
    resumed = train_sae("jumprelu", X, config, width=64, progress=False, resume_from=path)
    for key, value in whole.sae.state_dict().items():
        assert torch.equal(value, resumed.sae.state_dict()[key]), key
    assert whole.history == resumed.history
    assert whole.final_sparsity_coef == resumed.final_sparsity_coef
    assert whole.final_sparsity_coef != config.sparsity_coef


def test_a_batched_grid_steers_every_member_alone(reference_toy):
    X, held = reference_toy
    config = TrainConfig(n_samples=300_000, target_l0=5.0, **FAST)
    grid = train_grid(X, [0.03, 0.3], [64], config, progress=False)
    finals = [r.final_sparsity_coef for r in grid.members]
    # from starts a decade apart both end near the same coefficient, at the target
    assert finals[0] == pytest.approx(finals[1], rel=0.15)
    for member in grid.members:
        assert member.success, member.message
        assert held_out_l0(member.sae, held) == pytest.approx(5.0, rel=0.03)


def test_a_target_out_of_reach_is_reported(reference_toy):
    X, _ = reference_toy
    # L0 5 needs ~0.08: a ceiling of 0.02 pins the coefficient there
    pinned = train_sae("relu", X, TrainConfig(n_samples=100_000, target_l0=5.0,
                                              sparsity_coef=0.01, l0_coef_max=0.02, **FAST),
                       width=64, progress=False)
    assert not pinned.success
    assert "l0_coef_max=0.02" in pinned.message and "not reached" in pinned.message
    assert pinned.final_sparsity_coef == pytest.approx(0.02)
    # the data ends (10 batches of the 20 planned) inside the warm-up
    batches = [X[256 * i:256 * (i + 1)] for i in range(10)]
    ramp_only = train_sae(make_sae("relu", X.shape[1], 64), batches,
                          TrainConfig(n_samples=256 * 20, target_l0=5.0, sparsity_warmup=1.0,
                                      **FAST), progress=False)
    assert not ramp_only.success and "before control began" in ramp_only.message


def test_the_controller_steps_by_the_damped_relative_error():
    control = L0Controller([0.1, 0.1], target=10.0, gain=0.5, damping=0.1, coef_min=1e-3,
                           coef_max=1.0)
    control.update(torch.tensor([20.0, 5.0]))  # first step: smoothed = batch L0, no trend
    assert control.coefs == pytest.approx([0.1 * math.exp(0.5), 0.1 * math.exp(-0.25)])
    coefs = control.update(torch.tensor([10.0, 5.0]))
    # member 0: smoothed 20 -> 19, falling towards 10: damped; member 1: flat at 5
    smoothed0 = SMOOTHING * 20 + (1 - SMOOTHING) * 10
    assert float(control.smoothed[0]) == pytest.approx(smoothed0)
    expected0 = 0.1 * math.exp(0.5 + 0.5 * 0.1 * (smoothed0 - 10) / 10)
    expected1 = 0.1 * math.exp(-0.25 - 0.25)
    assert coefs.tolist() == pytest.approx([expected0, expected1])
    for _ in range(300):  # an L0 of 100 drives member 0 to its ceiling and pins it
        control.update(torch.tensor([100.0, 10.0]))
    assert control.coefs[0] == pytest.approx(1.0)
    assert control.pinned(1000) == [True, False]
    assert "l0_coef_max=1" in control.shortfall(0, 1000)
    assert control.shortfall(1, 1000) is None  # member 1 sits at its target
    control.update(torch.tensor([100.0, 10.0 * (1 + 3 * MISS_TOLERANCE) / (1 - SMOOTHING)]))
    assert "not reached: the training L0 ended at" in control.shortfall(1, 1000)


@pytest.mark.parametrize("target", [0, -1.0, float("nan"), float("inf")])
def test_a_bad_target_is_refused_naming_it(target):
    with pytest.raises(ValueError, match="target_l0"):
        TrainConfig(target_l0=target)


@pytest.mark.parametrize("changes, match", [
    (dict(target_l0=5.0, sparsity_coef=0.0), "sparsity_coef"),
    (dict(target_l0=5.0, sparsity_coef=5e3), "sparsity_coef"),
    (dict(l0_coef_min=1.0, l0_coef_max=0.5), "l0_coef_min"),
    (dict(l0_coef_min=0.0), "l0_coef_min"),
    (dict(l0_gain=-0.1), "l0_gain"),
    (dict(l0_damping=1.5), "l0_damping"),
])
def test_bad_controller_settings_are_refused_naming_them(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**changes)


@pytest.mark.parametrize("name", K_ARCHITECTURES)
def test_an_architecture_without_a_penalty_is_pointed_to_k(name, reference_toy):
    X, _ = reference_toy
    with pytest.raises(ValueError, match=r"target_l0.*k=5"):
        train_sae(make_sae(name, X.shape[1], 64), X, TrainConfig(target_l0=5.0), progress=False)


def test_a_target_wider_than_the_sae_is_refused_before_any_work(reference_toy):
    X, _ = reference_toy
    sae = make_sae("relu", X.shape[1], 16)
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    with pytest.raises(ValueError, match=r"target_l0 must be <= the width \(16\)"):
        train_sae(sae, X, TrainConfig(target_l0=17.0), progress=False)
    assert all(torch.equal(v, sae.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="sparsity_coefs"):
        train_grid(X, [0.03, 2e3], [16], TrainConfig(target_l0=5.0), progress=False)


def test_the_start_scales_with_the_data_as_its_penalty_does():
    from toysae.sae import start_coef
    from toysae.sae.l0_control import UNIT_SCALE_START

    assert start_coef("l1") == UNIT_SCALE_START["l1"] and start_coef("l0") == 0.001
    assert start_coef("l1", 4.0) == pytest.approx(4 * UNIT_SCALE_START["l1"])
    assert start_coef("l0", 4.0) == pytest.approx(16 * UNIT_SCALE_START["l0"])
    with pytest.raises(ValueError, match="penalty_kind"):
        start_coef("none")
    with pytest.raises(ValueError, match="data_scale"):
        start_coef("l1", 0.0)
