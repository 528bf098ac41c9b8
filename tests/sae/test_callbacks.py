"""``toysae.sae.callbacks``: the training loop's per-step hooks: what a logger sees, every
member of a grid, no change to a run, ``eval_fn`` as one callback, stopping, scaling the
learning rate, added log columns, and what is not a callback."""

import numpy as np
import pytest
import torch

from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae import (
    Callback,
    EvalFnCallback,
    ReLUSAE,
    RunOptions,
    StopTraining,
    TrainConfig,
    train_grid,
    train_sae,
)
from toysae.sae.schedules import lr_schedule

D = 12
TOY = SyntheticData(SyntheticConfig(d=D, n_features=8, mean_active=2.0, decay=0.9,
                                    correlation="none", orthogonal=True, seed=0))
# 30 steps, logged every 5, a warm-up and a decay so lr changes along the run
CFG = TrainConfig(n_samples=64 * 30, batch_size=64, lr=1e-2, sparsity_coef=0.05, log_every=5,
                  lr_warmup=0.1, lr_decay=0.2, resample_every=10, dead_window=5)


class StepLog(Callback):
    """Everything a per-step logger can read, every step."""

    def __init__(self):
        self.steps, self.parts, self.lrs, self.l0 = [], [], [], []

    def on_step(self, state):
        self.steps.append(state.step)
        self.parts.append(state.loss_parts())
        self.lrs.append(state.lr)
        self.l0.append([float((state.codes(k) > 0).sum(1).float().mean())
                        for k in range(state.n_members)])


def test_a_per_step_logger_sees_every_step_and_the_history_values():
    log = StepLog()
    result = train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False, callbacks=[log])
    assert log.steps == list(range(1, CFG.n_steps + 1))
    history = result.history
    for row in history.rows:
        k = int(row["step"]) - 1
        for name in ("loss", "reconstruction", "sparsity", "auxiliary"):
            assert log.parts[k][0][name] == row[name], (row["step"], name)
        assert log.lrs[k] == row["lr"]
        assert log.l0[k][0] == pytest.approx(row["l0"])
    assert len(log.steps) > len(history)  # the steps between logging steps too


def test_every_member_of_a_grid_reaches_the_callbacks():
    log = StepLog()
    grid = train_grid(TOY, [0.02, 0.1], [8, 16], CFG, layout="pad", progress=False,
                      callbacks=log)  # a lone callback is accepted
    assert log.steps == list(range(1, CFG.n_steps + 1))
    for k, member in enumerate(grid.members):  # layout="pad": members in grid order
        for row in member.history.rows:
            assert log.parts[int(row["step"]) - 1][k]["loss"] == row["loss"]


def test_callbacks_do_not_change_a_run():
    class Watcher(Callback):
        def on_start(self, state):
            self.started = state.step

        def on_step(self, state):
            state.loss_parts()

        def on_log(self, state, rows):
            for row in rows:
                row["watched"] = 1.0

    plain = train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False)
    watched = train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False,
                        callbacks=[Watcher()])
    for key, value in plain.sae.state_dict().items():
        assert torch.equal(value, watched.sae.state_dict()[key]), key
    assert watched.history["watched"].tolist() == [1.0] * len(plain.history)
    for name in plain.history:
        np.testing.assert_array_equal(plain.history[name], watched.history[name])


def test_eval_fn_is_one_callback():
    def eval_fn(sae):
        return {"atom_sum": float(sae.dictionary.sum())}

    a = train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False, eval_fn=eval_fn)
    b = train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False,
                  callbacks=[EvalFnCallback(eval_fn)])
    assert a.history == b.history and "atom_sum" in a.history
    with pytest.raises(TypeError, match="eval_fn must be callable"):
        EvalFnCallback(3)


class StopAt(Callback):
    def __init__(self, step, hook="on_step"):
        self.step, self.hook = step, hook

    def on_step(self, state):
        if self.hook == "on_step" and state.step == self.step:
            raise StopTraining("enough")

    def on_log(self, state, rows):
        if self.hook == "on_log" and state.step == self.step:
            raise StopTraining


def test_stop_training_ends_the_run_after_that_step(tmp_path):
    path = tmp_path / "run.safetensors"
    result = train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False, callbacks=[StopAt(7)],
                       checkpoint_every=5, checkpoint_path=path)
    assert result.success and result.n_iter == 7 and result.n_samples == 7 * 64
    assert "stopped by StopAt.on_step before the planned 30 steps: enough" in result.message
    assert result.history["step"].tolist() == [5.0, 7.0]  # the last step gets its row
    # the same steps as the run that was not stopped, up to there
    whole = train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False)
    assert result.history.rows[0] == whole.history.rows[0]
    # the checkpoint is the finished run: resuming returns it at once
    again = train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False, resume_from=path)
    assert again.message == result.message and again.history == result.history
    for key, value in result.sae.state_dict().items():
        assert torch.equal(value, again.sae.state_dict()[key])
    # from on_log, at a logging step: that row is the last, and the other hooks still run
    later = []

    class After(Callback):
        def on_log(self, state, rows):
            later.append(state.step)

    result = train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False,
                       callbacks=[StopAt(10, "on_log"), After()])
    assert result.n_iter == 10 and result.history["step"].tolist() == [5.0, 10.0]
    assert later == [5, 10] and result.message.endswith("30 steps")


def test_lr_scale_changes_the_learning_rate_from_the_next_step():
    class Freeze(Callback):
        def on_start(self, state):
            state.lr_scale = 0.0

    sae = ReLUSAE(D, 16, seed=0)
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    result = train_sae(sae, TOY, CFG, progress=False, callbacks=[Freeze()])
    assert result.history["lr"].tolist() == [0.0] * len(result.history)
    for key in ("W_enc", "b_enc", "b_dec"):  # Adam at lr 0 moves nothing
        assert torch.equal(sae.state_dict()[key], before[key]), key

    class Halve(Callback):
        def on_step(self, state):
            if state.step == 12:
                state.lr_scale = 0.5

    result = train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False, callbacks=[Halve()])
    n = CFG.n_steps
    for row in result.history.rows:
        step = int(row["step"]) - 1
        scheduled = CFG.lr * lr_schedule(step, n, CFG.lr_warmup, CFG.lr_decay)
        assert row["lr"] == (scheduled * 0.5 if step >= 12 else scheduled)

    class Bad(Callback):
        def on_start(self, state):
            state.lr_scale = -1.0

    with pytest.raises(ValueError, match="lr_scale"):
        train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False, callbacks=[Bad()])


def test_on_log_adds_columns_and_may_not_change_the_engines():
    class Column(Callback):
        def __init__(self, name, value):
            self.name, self.value = name, value

        def on_log(self, state, rows):
            for row in rows:
                row[self.name] = self.value

    result = train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False,
                       callbacks=[Column("mine", 2)])
    assert result.history["mine"].tolist() == [2.0] * len(result.history)
    with pytest.raises(TypeError, match=r"callbacks: Column.on_log changed .*'loss'"):
        train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False,
                  callbacks=[Column("loss", 0.0)])
    with pytest.raises(TypeError, match=r"callbacks: Column.on_log put 'mine': 'x'"):
        train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False,
                  callbacks=[Column("mine", "x")])
    # eval_fn's own check: no name already in the row, earlier callbacks' columns included
    with pytest.raises(ValueError, match="eval_fn returned 'mine'"):
        train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False,
                  callbacks=[Column("mine", 1.0), EvalFnCallback(lambda s: {"mine": 1.0})])


def test_callbacks_must_be_callbacks():
    class NotOne:
        def on_step(self, state):
            pass

    with pytest.raises(TypeError, match=r"callbacks\[1\] must be a toysae.sae.Callback"):
        train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False,
                  callbacks=[Callback(), NotOne()])
    with pytest.raises(TypeError, match="callbacks must be a sequence"):
        train_sae(ReLUSAE(D, 16, seed=0), TOY, CFG, progress=False, callbacks=3)
    with pytest.raises(TypeError, match="callbacks"):
        RunOptions(callbacks=[lambda state: None])
