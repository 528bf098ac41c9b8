"""``toysae.sae.train_state``: checkpointing a training run and resuming it: bit-identical
to a run never interrupted (one killed with SIGKILL too); a different, tampered or foreign
checkpoint refused."""

import json
import signal

import numpy as np
import pytest
import torch

from toysae._io import write_safetensors
from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae import (
    ARCHITECTURES,
    TrainConfig,
    TrainingDiverged,
    make_sae,
    save,
    train_grid,
    train_sae,
)
from toysae.sae.train_state import read_train_state, run_differences, write_train_state

D = 12
TINY = SyntheticConfig(d=D, n_features=8, mean_active=2.0, decay=0.9, correlation="none",
                       orthogonal=True, seed=0)
# 100 steps; dead latents resampled every 20 steps up to step 60, so the resampling
# generators, the dead counters and the pool all matter on both sides of a checkpoint.
RUN = TrainConfig(n_samples=128 * 100, batch_size=128, lr=1e-2, sparsity_coef=0.05,
                  log_every=10, resample_every=20, dead_window=10)
# Matching pursuit at k = 2 keeps every atom alive here (each wins some residual): k = 1
# lets some die, so that resampling is part of the run.
KWARGS = {"topk": {"k": 2}, "batchtopk": {"k": 2}, "matching_pursuit": {"k": 1},
          "matryoshka": {"k": 2, "prefix_sizes": [8, 16]}}


class Interrupt(Exception):
    pass


def probe(stop_at: int | None = None):
    """An eval_fn that logs a number of the dictionary and raises on call ``stop_at``."""
    calls = []

    def evaluate(sae):
        calls.append(1)
        if len(calls) == stop_at:
            raise Interrupt
        return {"atom_sum": float(sae.dictionary.sum())}

    return evaluate


def assert_same_run(a, b):
    state_a, state_b = a.sae.state_dict(), b.sae.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    assert a.history == b.history
    assert (a.n_iter, a.n_samples, a.n_resampled, a.success, a.message) == \
        (b.n_iter, b.n_samples, b.n_resampled, b.success, b.message)
    assert len(a.dictionary_history) == len(b.dictionary_history)
    for x, y in zip(a.dictionary_history, b.dictionary_history, strict=True):
        assert np.array_equal(x, y)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def toy():
    return SyntheticData(TINY)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_an_interrupted_run_resumes_bit_identical(toy, name, tmp_path):
    def sae():
        return make_sae(name, D, 32, **KWARGS.get(name, {}))

    whole = train_sae(sae(), toy, RUN, eval_fn=probe(), progress=False)
    path = tmp_path / "run.safetensors"
    # Checkpoints at steps 35 and 70; the 6th logging step (60) interrupts the run, so it
    # resumes from step 35, which is not a logging step.
    with pytest.raises(Interrupt):
        train_sae(sae(), toy, RUN, eval_fn=probe(stop_at=6), progress=False,
                  checkpoint_every=35, checkpoint_path=path)
    state, _ = read_train_state(path)
    assert state["n_iter"] == 35 and state["finished"] is None
    resumed = train_sae(sae(), toy, RUN, eval_fn=probe(), progress=False, resume_from=path)
    assert_same_run(whole, resumed)
    assert whole.n_resampled > 0
    assert not [p.name for p in tmp_path.iterdir() if p.name != "run.safetensors"]


def test_array_and_batch_list_data_resume_bit_identical(toy, tmp_path):
    X = toy.sample(1000, seed=5).x  # 8 batches an epoch: the checkpoint falls mid-epoch
    batches = [toy.sample(128, seed=100 + k).x for k in range(100)]
    for data in (X, batches):
        whole = train_sae(make_sae("relu", D, 32), data, RUN, eval_fn=probe(), progress=False)
        path = tmp_path / "run.safetensors"
        with pytest.raises(Interrupt):
            train_sae(make_sae("relu", D, 32), data, RUN, eval_fn=probe(stop_at=5),
                      progress=False, checkpoint_every=27, checkpoint_path=path)
        resumed = train_sae(make_sae("relu", D, 32), data, RUN, eval_fn=probe(),
                            progress=False, resume_from=path)
        assert_same_run(whole, resumed)


def test_a_batched_grid_resumes_bit_identical(toy, tmp_path):
    config = RUN.replace(n_samples=128 * 60, resample_until=0.9)
    whole = train_grid(toy, [0.02, 0.08], [12, 24], config, record_dictionaries=True,
                       layout="pad", progress=False)
    path = tmp_path / "grid.safetensors"
    # eval_fn runs for each of the 4 members at every logging step: call 13 is step 40.
    with pytest.raises(Interrupt):
        train_grid(toy, [0.02, 0.08], [12, 24], config, record_dictionaries=True,
                   layout="pad", progress=False, eval_fn=lambda_probe(13),
                   checkpoint_every=25, checkpoint_path=path)
    resumed = train_grid(toy, [0.02, 0.08], [12, 24], config, record_dictionaries=True,
                         layout="pad", progress=False, resume_from=path)
    for a, b in zip(whole.members, resumed.members, strict=True):
        assert_same_run(a, b)
    assert sum(m.n_resampled for m in whole.members) > 0


def lambda_probe(stop_at):
    """probe() without logged values (the uninterrupted grid logs none)."""
    calls = []

    def evaluate(sae):
        calls.append(1)
        if len(calls) == stop_at:
            raise Interrupt
        return {}

    return evaluate


def test_divergence_after_a_resume_restores_the_same_state(toy, tmp_path):
    # lr 1 blows the loss up 17-fold by step 50: both runs must restore step 40's state,
    # which the checkpoint at step 45 (not a logging step) has to carry for the resumed run.
    config = RUN.replace(lr=1.0, lr_warmup=0.5, lr_decay=0.0, resample_every=0,
                         divergence_factor=10.0)
    with pytest.raises(TrainingDiverged) as whole:
        train_sae(make_sae("relu", D, 32), toy, config, progress=False)
    path = tmp_path / "run.safetensors"
    with pytest.raises(TrainingDiverged):
        train_sae(make_sae("relu", D, 32), toy, config, progress=False, checkpoint_every=45,
                  checkpoint_path=path)
    assert read_train_state(path)[0]["n_iter"] == 45
    with pytest.raises(TrainingDiverged) as resumed:
        train_sae(make_sae("relu", D, 32), toy, config, progress=False, resume_from=path)
    assert str(whole.value) == str(resumed.value)
    assert_same_run(whole.value.result, resumed.value.result)


def test_a_finished_run_checkpoints_its_end_and_resumes_to_it(toy, tmp_path):
    path = tmp_path / "run.safetensors"
    done = train_sae("relu", toy, RUN, width=32, progress=False, checkpoint_every=30,
                     checkpoint_path=path)
    state, _ = read_train_state(path)
    assert state["n_iter"] == RUN.n_steps and state["finished"] == done.message
    again = train_sae("relu", toy, RUN, width=32, progress=False, resume_from=path)
    assert_same_run(done, again)
    assert not again.sae.training
    assert again.wall_time == pytest.approx(state["wall_time"])
    # Resuming and checkpointing on: checkpoints go on to the same file.
    path.unlink()
    with pytest.raises(Interrupt):
        train_sae("relu", toy, RUN, width=32, eval_fn=probe(stop_at=5), progress=False,
                  checkpoint_every=20, checkpoint_path=path)
    train_sae("relu", toy, RUN, width=32, eval_fn=probe(), progress=False, resume_from=path,
              checkpoint_every=20)
    assert read_train_state(path)[0]["n_iter"] == RUN.n_steps


def test_resuming_a_different_run_is_refused_before_any_change(toy, tmp_path):
    path = tmp_path / "run.safetensors"
    with pytest.raises(Interrupt):
        train_sae("relu", toy, RUN, width=32, eval_fn=probe(stop_at=3), progress=False,
                  checkpoint_every=20, checkpoint_path=path)
    sae = make_sae("relu", D, 32)
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    other_toy = SyntheticData(TINY.__class__.from_dict({**TINY.to_dict(), "seed": 1}))
    refusals = [
        (dict(sae=sae, data=toy, config=RUN.replace(lr=2e-2)), r"config\.lr: 0\.01 in the "
                                                               r"checkpoint, 0\.02 here"),
        (dict(sae=sae, data=toy, config=RUN.replace(seed=3)), r"config\.seed"),
        (dict(sae=make_sae("relu", D, 24), data=toy, config=RUN), r"stacks\[0\]\.widths"),
        (dict(sae=make_sae("tied", D, 32), data=toy, config=RUN), r"architecture"),
        (dict(sae=make_sae("relu", D, 32, seed=4), data=toy, config=RUN), r"\.seed: 0"),
        (dict(sae=sae, data=other_toy, config=RUN), r"data\.config\.seed"),
        (dict(sae=sae, data=toy.sample(500).x, config=RUN), r"data\.kind"),
    ]
    for kwargs, match in refusals:
        with pytest.raises(ValueError, match=match):
            train_sae(kwargs.pop("sae"), progress=False, resume_from=path, **kwargs)
    for key, value in sae.state_dict().items():
        assert torch.equal(value, before[key])


def test_a_tampered_or_foreign_checkpoint_is_refused(toy, tmp_path):
    path = tmp_path / "run.safetensors"
    with pytest.raises(Interrupt):
        train_sae("relu", toy, RUN, width=32, eval_fn=probe(stop_at=3), progress=False,
                  checkpoint_every=20, checkpoint_path=path)
    state, tensors = read_train_state(path)

    def resume_with(tensors=tensors, state=state):
        bad = tmp_path / "bad.safetensors"
        write_train_state(bad, tensors, state)
        train_sae("relu", toy, RUN, width=32, progress=False, resume_from=bad)

    with pytest.raises(ValueError, match=r"'stack.0.W_enc' is \(12, 31\)"):
        resume_with({**tensors, "stack.0.W_enc": tensors["stack.0.W_enc"][:, :31]})
    with pytest.raises(ValueError, match="lacks tensor 'generator.0'"):
        resume_with({k: v for k, v in tensors.items() if k != "generator.0"})
    with pytest.raises(ValueError, match="unexpected tensors"):
        resume_with({**tensors, "extra": torch.zeros(2)})
    with pytest.raises(ValueError, match="incomplete Adam state"):
        resume_with({k: v for k, v in tensors.items() if k != "adam.0.step"})
    with pytest.raises(ValueError, match="corrupt state document: n_iter"):
        resume_with(state={**state, "n_iter": -1})
    bad = tmp_path / "bad.safetensors"
    write_safetensors(bad, tensors, {"format": "toysae-train-state", "version": "1",
                                "state": json.dumps({"n_iter": 3})})
    with pytest.raises(ValueError, match="corrupt state document: keys"):
        train_sae("relu", toy, RUN, width=32, progress=False, resume_from=bad)
    with pytest.raises(ValueError, match="history 0"):
        resume_with(state={**state, "histories": [[{"loss": "high"}]]})
    sae_file = save(make_sae("relu", D, 32), tmp_path / "sae.safetensors")
    with pytest.raises(ValueError, match="not a toysae training checkpoint"):
        train_sae("relu", toy, RUN, width=32, progress=False, resume_from=sae_file)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        train_sae("relu", toy, RUN, width=32, progress=False, resume_from=truncated)


def test_checkpoint_arguments_are_checked_before_training(toy, tmp_path):
    path = tmp_path / "run.safetensors"
    cases = [
        (dict(checkpoint_every=0, checkpoint_path=path), ValueError, "checkpoint_every"),
        (dict(checkpoint_every=2.5, checkpoint_path=path), TypeError, "checkpoint_every"),
        (dict(checkpoint_every=True, checkpoint_path=path), TypeError, "checkpoint_every"),
        (dict(checkpoint_every=10), ValueError, "go together"),
        (dict(checkpoint_path=path), ValueError, "go together"),
        (dict(checkpoint_every=10, checkpoint_path=tmp_path), ValueError, "is a directory"),
        (dict(checkpoint_every=10, checkpoint_path=3), TypeError, "checkpoint_path"),
        (dict(resume_from=tmp_path / "missing.safetensors"), FileNotFoundError, "resume_from"),
    ]
    for kwargs, kind, match in cases:
        with pytest.raises(kind, match=match):
            train_sae("relu", toy, RUN, width=32, progress=False, **kwargs)
    assert not path.exists()


def test_run_differences_names_every_path():
    saved = {"config": {"lr": 0.01, "seed": 0}, "widths": [4, 8], "data": {"kind": "array"}}
    current = {"config": {"lr": 0.01, "seed": 1}, "widths": [4, 9], "extra": 1,
               "data": {"kind": "array"}}
    assert run_differences(saved, saved) == []
    assert run_differences(saved, current) == [
        "config.seed: 0 in the checkpoint, 1 here", "widths[1]: 8 in the checkpoint, 9 here",
        "extra: absent in the checkpoint, 1 here"]
    assert run_differences({"a": 1}, {"a": 1.0}) == ["a: 1 in the checkpoint, 1.0 here"]
    assert run_differences({"a": [1, 2]}, {"a": [1]}) == \
        [f"a: {json.dumps([1, 2])} in the checkpoint, [1] here"]


# A child process training with a checkpoint after every step, so that a kill at any
# moment is likely to land mid-write: argv is the data config, the run config and the path.
TRAIN_WITH_CHECKPOINTS = """
import sys

from toysae._threads import torch_threads
from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae import TrainConfig, make_sae, train_sae

data, run, path = sys.argv[1:]
with torch_threads(1):
    train_sae(make_sae("relu", 12, 32), SyntheticData(SyntheticConfig.from_json(data)),
              TrainConfig.from_json(run), progress=False, checkpoint_every=1,
              checkpoint_path=path)
"""


def test_a_run_killed_mid_checkpoint_resumes_bit_identical(toy, tmp_path):
    from child_processes import finish, kill_group, start, wait_until

    from toysae._io import is_leftover_temporary

    config = RUN.replace(n_samples=128 * 400)
    path = tmp_path / "run.safetensors"
    child = start(["-c", TRAIN_WITH_CHECKPOINTS, TINY.to_json(), config.to_json(), str(path)])

    def past_step_20():
        try:
            return read_train_state(path)[0]["n_iter"] >= 20
        except (OSError, ValueError):  # not written yet
            return False

    def writing():
        return any(is_leftover_temporary(p.name) for p in tmp_path.iterdir())

    wait_until(past_step_20, child, what="a checkpoint past step 20")
    wait_until(writing, child, what="a checkpoint being written", poll=0.0005)
    kill_group(child, signal.SIGKILL)  # mid-write, most likely (it is caught in the act)
    code, _, err = finish(child)
    assert code == -signal.SIGKILL, err
    # The last checkpoint is whole (a write cut short stays in its temporary file, which
    # nothing reads), and the run resumes from it to the uninterrupted run's end.
    state, _ = read_train_state(path)
    assert 20 <= state["n_iter"] < config.n_steps and state["finished"] is None
    assert all(is_leftover_temporary(p.name) for p in tmp_path.iterdir() if p != path)
    resumed = train_sae(make_sae("relu", D, 32), toy, config, progress=False,
                        resume_from=path)
    whole = train_sae(make_sae("relu", D, 32), toy, config, progress=False)
    assert_same_run(whole, resumed)
