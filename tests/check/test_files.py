"""``toysae.check.files`` and ``toysae check``: an SAE checked on activation files in
batches gives the in-memory ``check_sae`` numbers, reads the files a block at a time (in
shards of either format), and refuses bad input before any work; a check killed mid-pass
is rerun from a clean store."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as save_numpy

import toysae.check._activations as activations_module
import toysae.theory.pairs as pairs_module
import toysae.theory.sae as sae_module
from toysae._io import save_module_tensors
from toysae._threads import torch_threads
from toysae.check import check_sae_files
from toysae.check._activations import Activations
from toysae.cli import main
from toysae.data import SyntheticConfig, SyntheticData
from toysae.sae import make_sae
from toysae.sae.checkpoint import FORMAT, VERSION, save
from toysae.theory import check_sae

LAM = 0.05
N, D, WIDTH, BATCH = 1200, 8, 16, 256


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Activations of a small toy on disk and a ReLU SAE whose decoder holds the true
    features plus a few random atoms (a dictionary with something to find)."""
    root = tmp_path_factory.mktemp("check")
    data = SyntheticData(SyntheticConfig(d=D, n_features=12, mean_active=2.0,
                                         hierarchy=((0, 5), (1, 6)), seed=0))
    X = data.sample(N, seed=1).x.astype(np.float32)
    sae = make_sae("relu", D, WIDTH, seed=0)
    with torch.no_grad():
        W = torch.randn(WIDTH, D, generator=torch.Generator().manual_seed(1))
        W[:12] = torch.as_tensor(data.features, dtype=torch.float32)
        W /= W.norm(dim=1, keepdim=True)
        sae.W_dec.copy_(W)
        sae.W_enc.copy_(W.T)
        sae.b_enc.fill_(-0.2)
    path = root / "sae.safetensors"
    save(sae, path)
    np.save(root / "acts.npy", X)
    return root, X, sae, path


def _check_files(path, acts, **kwargs):
    with torch_threads(1):
        return check_sae_files(path, acts, progress=False, **{"lam": LAM, "batch_size": BATCH,
                                                              **kwargs})


def _same(a, b):
    """The numbers of a file report ``a`` and an in-memory SAEOptimalityReport ``b``."""
    am, bm = a.amortisation, b.amortisation
    for name in ("sae_objective", "optimal_objective", "gap", "code_relative_error",
                 "support_jaccard", "sae_l0", "optimal_l0", "sae_kkt_violation"):
        assert getattr(am, name) == pytest.approx(getattr(bm, name), rel=1e-9, abs=1e-12), name
    ao, bo = a.optimality, b.optimality
    assert ao.objective == pytest.approx(bo.objective, rel=1e-12)
    assert ao.code.max_violation == pytest.approx(bo.code.max_violation, abs=1e-12)
    assert ao.code.n_violations == bo.code.n_violations
    assert np.allclose(ao.atoms.violation, bo.atoms.violation, rtol=1e-9, atol=1e-12)
    assert (ao.pairs.n_violations, ao.pairs.n_hull_failures, ao.pairs.n_nested) == (
        bo.pairs.n_violations, bo.pairs.n_hull_failures, bo.pairs.n_nested)
    assert ao.pairs.max_violation == pytest.approx(bo.pairs.max_violation, rel=1e-9)
    assert [w[:2] for w in ao.pairs.worst] == [w[:2] for w in bo.pairs.worst]
    assert ao.hierarchy.n_nested == bo.hierarchy.n_nested
    assert [(s.child, s.parent) for s in ao.hierarchy.steps] == [
        (s.child, s.parent) for s in bo.hierarchy.steps]
    for s, t in zip(ao.hierarchy.steps, bo.hierarchy.steps, strict=True):
        assert s.verified_drop == pytest.approx(t.verified_drop, rel=1e-9)
    assert (ao.bias is None) == (bo.bias is None)
    if ao.bias is not None:
        assert ao.bias.violation == pytest.approx(bo.bias.violation, rel=1e-9)
    assert a.passed == b.passed


def test_files_in_batches_give_the_in_memory_numbers(world, monkeypatch):
    root, X, sae, path = world
    reads, solves = [], []
    read = activations_module.Activations.read
    code = sae_module.sparse_code

    def spy_read(self, start, stop):
        out = read(self, start, stop)
        reads.append(len(out))
        return out

    def spy_code(X, *args, **kwargs):
        solves.append(len(X))
        return code(X, *args, **kwargs)

    monkeypatch.setattr(activations_module.Activations, "read", spy_read)
    monkeypatch.setattr(sae_module, "sparse_code", spy_code)
    rep = _check_files(path, root / "acts.npy")
    monkeypatch.undo()
    # the file was read a block at a time, twice over, and re-solved a batch at a time
    assert sum(reads) == 2 * N and max(reads) <= BATCH and len(reads) > 2 * N // BATCH
    assert max(solves) <= BATCH and sum(solves) == N and rep.n_batches == len(solves) == 5
    with torch_threads(1):
        ref = check_sae(sae, X, LAM, batch_size=BATCH)
    _same(rep, ref)
    assert not rep.passed and not rep.amortisation.passed
    assert rep.optimality.hierarchy.n_certified > 0  # the streamed steps were verified
    assert rep.amortisation.per_sample_gap is None and rep.amortisation.optimal_codes is None
    assert rep.optimality.code.per_sample is None
    assert all(s.rows is None for s in rep.optimality.hierarchy.steps)
    assert rep.lam_source == "given" and rep.n_samples == N and rep.width == WIDTH
    assert rep.message.splitlines()[1].startswith("verdict: the decoder is not")
    out = json.loads(rep.to_json())
    assert out["optimality"]["pairs"]["n_violations"] == rep.optimality.pairs.n_violations
    assert "?" not in repr(rep) and "?" not in repr(rep.hull_samples[0])
    assert len(out["hull_samples"]) == 4 and "t" not in out["hull_samples"][0]


def test_candidate_pairs_on_files_match_the_in_memory_check(world, monkeypatch):
    root, X, sae, path = world
    monkeypatch.setattr(pairs_module, "ALL_PAIRS_MAX_ATOMS", 4)
    rep = _check_files(path, root / "acts.npy", batch_size=500)
    with torch_threads(1):
        ref = check_sae(sae, X, LAM, batch_size=500)
    assert rep.optimality.pairs.scope == ref.optimality.pairs.scope == "candidates"
    _same(rep, ref)
    keys = {tuple(p) for p in rep.optimality.pairs.pairs}
    assert keys == {tuple(p) for p in ref.optimality.pairs.pairs}


def test_hull_samples_are_the_responses_of_the_worst_pairs(world):
    root, X, sae, path = world
    rep = _check_files(path, root / "acts.npy")
    assert len(rep.hull_samples) == 4
    with torch_threads(1):
        amort = check_sae(sae, X, LAM, batch_size=BATCH).amortisation
    D = sae.dictionary.detach().double().numpy()
    Z = np.asarray(amort.optimal_codes)
    # the largest identity violations among pairs whose first atom fires 50 times or more
    V = np.where((Z > 0).sum(axis=0)[:, None] >= 50, rep.optimality.pairs.identity_violation, 0)
    np.fill_diagonal(V, 0)
    top = np.argsort(-V, axis=None, kind="stable")[:4]
    assert [(s.i, s.j) for s in rep.hull_samples] == [divmod(int(f), WIDTH) for f in top]
    S = (X - Z @ D - sae.b_dec.detach().double().numpy()) @ D.T / LAM
    for s in rep.hull_samples:
        on = Z[:, s.i] > 0
        assert s.n_support == on.sum() and len(s.t) == min(on.sum(), 2000)
        assert np.allclose(s.t, S[on, s.j][:len(s.t)], atol=1e-9)
        assert (s.coactive == (Z[on, s.j] > 0)[:len(s.t)]).all()
        assert s.hull_low <= s.weighted_mean <= s.hull_high


def test_safetensors_shards_and_leading_axes_read_the_same_rows(world, tmp_path):
    root, X, sae, path = world
    save_numpy({"acts": X}, tmp_path / "one.safetensors")
    shards = tmp_path / "shards"
    shards.mkdir()
    np.save(shards / "a.npy", X[:500])
    save_numpy({"x": X[500:900].astype(np.float64)}, shards / "b.safetensors")
    np.save(shards / "c.npy", X[900:].reshape(50, 6, D))  # (batch, context, d)
    (shards / "notes.txt").write_text("ignored")
    np.save(tmp_path / "fortran.npy", np.asfortranarray(X))
    for source in (tmp_path / "one.safetensors", shards, tmp_path / "fortran.npy"):
        acts = Activations(source)
        assert acts.shape == (N, D)
        assert np.array_equal(acts.read(0, N), X.astype(np.float64))
        assert np.array_equal(acts[450:950], X[450:950].astype(np.float64))
    base = _check_files(path, root / "acts.npy")
    again = _check_files(path, shards)
    assert again.optimality.objective == pytest.approx(base.optimality.objective, rel=1e-12)
    assert again.amortisation.gap == pytest.approx(base.amortisation.gap, rel=1e-12)


def test_the_recorded_coefficient_is_the_default_lam(world, tmp_path):
    root, X, sae, _ = world
    path = tmp_path / "trained.safetensors"
    save_module_tensors(sae, path, {"format": FORMAT, "version": VERSION,
                                    "architecture": "relu", "config": json.dumps(sae.config()),
                                    "training": json.dumps({"sparsity_coef": LAM})})
    rep = _check_files(path, root / "acts.npy", lam=None)
    assert rep.lam == LAM and rep.lam_source == "recorded"
    assert "recorded in the SAE file" in rep.message.splitlines()[0]
    jump = make_sae("jumprelu", D, WIDTH, seed=0)
    save_module_tensors(jump, tmp_path / "jump.safetensors", {
        "format": FORMAT, "version": VERSION, "architecture": "jumprelu",
        "config": json.dumps(jump.config()), "training": json.dumps({"sparsity_coef": 1.0})})
    with pytest.raises(ValueError, match="lam: the jumprelu SAE .* l0 penalty"):
        _check_files(tmp_path / "jump.safetensors", root / "acts.npy", lam=None)


def test_bad_input_is_refused_before_any_work(world, tmp_path):
    root, X, sae, path = world
    acts = root / "acts.npy"
    with pytest.raises(ValueError, match="lam: .* records no training coefficient"):
        _check_files(path, acts, lam=None)
    with pytest.raises(ValueError, match="lam"):
        _check_files(path, acts, lam=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        _check_files(path, acts, batch_size=0)
    with pytest.raises(FileNotFoundError, match="no activations"):
        _check_files(path, tmp_path / "missing.npy")
    np.save(tmp_path / "wide.npy", np.zeros((10, D + 1), np.float32))
    with pytest.raises(ValueError, match=r"have d = 9 but the SAE .* reads d = 8"):
        _check_files(path, tmp_path / "wide.npy")
    bad = X.copy()
    bad[700, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match=r"nan\.npy: row 700 of the activations contains NaN"):
        _check_files(path, tmp_path / "nan.npy")
    np.save(tmp_path / "flat.npy", np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        Activations(tmp_path / "flat.npy")
    np.save(tmp_path / "ints.npy", np.zeros((4, D), np.int64))
    with pytest.raises(ValueError, match="floating point"):
        Activations(tmp_path / "ints.npy")
    save_numpy({"a": X, "b": X}, tmp_path / "two.safetensors")
    with pytest.raises(ValueError, match="exactly one tensor"):
        Activations(tmp_path / "two.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 20)
    with pytest.raises(ValueError, match="not a safetensors file"):
        Activations(tmp_path / "junk.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .npy or .safetensors shards"):
        Activations(tmp_path / "empty")
    np.save(tmp_path / "empty" / "a.npy", np.zeros((3, 4), np.float32))
    np.save(tmp_path / "empty" / "b.npy", np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="differ in d: a.npy has 4, b.npy has 5"):
        Activations(tmp_path / "empty")


def test_cli_check_writes_json_and_figure(world, tmp_path, capsys):
    root, X, sae, path = world
    rc = main(["check", str(path), str(root / "acts.npy"), "--lam", str(LAM), "--out",
               str(tmp_path / "out"), "--batch-size", "400", "--threads", "1",
               "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.startswith("toysae check: relu SAE (16 latents, d = 8)")
    assert "verdict:" in out.splitlines()[1]
    numbers = json.loads((tmp_path / "out" / "check-sae.json").read_text())
    assert numbers["n_samples"] == N and numbers["n_batches"] == 3
    assert (tmp_path / "out" / "check-sae.png").stat().st_size > 20_000
    assert not list((tmp_path / "out").glob(".*"))


def test_cli_check_errors_are_one_line(world, tmp_path, capsys):
    root, X, sae, path = world
    assert main(["check", str(path), str(root / "acts.npy"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("toysae: lam:")
    assert "Traceback" not in err
    assert main(["check", str(tmp_path / "nope.safetensors"), str(root / "acts.npy"),
                 "--lam", "0.1", "--no-progress", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.safetensors" in err


def test_an_sae_made_by_saelens_is_checked_end_to_end(world, tmp_path, capsys):
    sae_lens = pytest.importorskip("sae_lens")
    import toysae.interop as interop

    root, X, _, _ = world
    model = sae_lens.StandardSAE(sae_lens.StandardSAEConfig(d_in=D, d_sae=WIDTH))
    rng = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.3 * torch.randn(param.shape, generator=rng))
    model.save_model(tmp_path / "saelens")
    rc = main(["check", str(tmp_path / "saelens"), str(root / "acts.npy"), "--lam", str(LAM),
               "--out", str(tmp_path / "out"), "--batch-size", "500", "--threads", "1",
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    numbers = json.loads((tmp_path / "out" / "check-saelens.json").read_text())
    sae = interop.load_saelens(tmp_path / "saelens")
    with torch_threads(1):
        ref = check_sae(sae, X, LAM, batch_size=500)
    assert numbers["architecture"] == "relu" and numbers["width"] == WIDTH
    assert numbers["amortisation"]["gap"] == pytest.approx(ref.amortisation.gap, rel=1e-9)
    assert numbers["optimality"]["objective"] == pytest.approx(ref.optimality.objective,
                                                               rel=1e-12)
    assert numbers["passed"] == ref.passed


def test_a_check_killed_mid_pass_reruns_from_a_clean_store(world, tmp_path):
    from child_processes import child_env, finish, kill_group, start, wait_until

    root, X, sae, path = world
    stores = tmp_path / "tmp"
    stores.mkdir()
    args = [str(path), str(root / "acts.npy"), "--lam", str(LAM), "--batch-size", "8",
            "--threads", "1", "--no-progress", "--out", str(tmp_path / "out")]
    child = start(["-m", "toysae.cli", "check", *args], env=child_env(TMPDIR=str(stores)))

    def codes_written():  # pass 1 under way: some codes in the store on disk
        return any(f.stat().st_size > 0 for f in stores.glob("toysae-codes-*/data"))

    wait_until(codes_written, child, what="codes in the store", poll=0.001)
    kill_group(child, signal.SIGKILL)
    code, _, err = finish(child)
    assert code == -signal.SIGKILL, err
    [orphan] = stores.iterdir()  # what the killed check could not delete
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    # The rerun makes a new store (never reading the orphan, which it removes): the
    # numbers of a check never interrupted.
    rep = _check_files(path, root / "acts.npy", batch_size=8, tmp_dir=stores)
    with torch_threads(1):
        _same(rep, check_sae(sae, X, LAM, batch_size=8))
    assert not orphan.exists() and not list(stores.iterdir())


def test_ctrl_c_during_a_check_is_one_line_and_removes_the_store(world, tmp_path):
    from child_processes import child_env, finish, kill_group, start, wait_until

    root, X, sae, path = world
    stores, out = tmp_path / "tmp", tmp_path / "out"
    stores.mkdir()
    # Many batches, so the check is still in its first pass when the signal lands (the
    # world's own file can be checked whole before it does on a fast idle machine).
    acts = tmp_path / "acts.npy"
    np.save(acts, np.tile(X, (200, 1)))
    child = start(["-m", "toysae.cli", "check", str(path), str(acts), "--lam",
                   str(LAM), "--batch-size", "8", "--threads", "1", "--no-progress",
                   "--out", str(out)], env=child_env(TMPDIR=str(stores)))
    wait_until(lambda: any(stores.glob("toysae-codes-*/data")), child,
               what="the code store", poll=0.001)
    kill_group(child, signal.SIGINT)
    code, _, err = finish(child)
    assert (code, err) == (130, "toysae: interrupted\n")
    assert not list(stores.iterdir()) and not list(out.iterdir())
