"""Atomic writes (toysae/_io.py): the umask's mode, data on disk before the rename, no
temporary file left behind when a write fails midway, and those a killed process left
recognised and cleared."""

import errno
import hashlib
import json
import os
import stat
import subprocess
import sys

import matplotlib.pyplot as plt
import pytest

from toysae._io import (
    atomic_directory,
    atomic_path,
    file_sha256,
    is_leftover_temporary,
    remove_leftover_temporaries,
    save_figure,
    write_text,
)
from toysae.sae import make_sae, save


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    before = os.umask(0o022)
    os.umask(before)
    yield lambda mask: os.umask(mask)
    os.umask(before)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _writers():
    def figure(path):
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.plot([0, 1])
        return save_figure(fig, path)

    return {"text.json": lambda p: write_text(p, "{}"), "figure.png": figure,
            "sae.safetensors": lambda p: save(make_sae("relu", 3, 4), p)}


@pytest.mark.figure_problems_allowed  # a 1-inch figure: the file's mode is what is tested
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002], ids=oct)
def test_files_get_the_mode_the_umask_gives(tmp_path, umask, mask):
    umask(mask)
    for name, write in _writers().items():
        path = write(tmp_path / name)
        assert _mode(path) == 0o666 & ~mask, name
    # replacing an existing file gives the same mode, not the old file's or 0600
    write_text(tmp_path / "text.json", "[]")
    assert _mode(tmp_path / "text.json") == 0o666 & ~mask


@pytest.mark.figure_problems_allowed  # a 1-inch figure: the order of the writes is tested
def test_data_reaches_the_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")
                       if os.path.exists(f"/proc/self/fd/{fd}") else fd))
        return fsync(fd)

    def recording_replace(src, dst):
        events.append(("replace", str(src)))
        return replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    for name, write in _writers().items():
        events.clear()
        write(tmp_path / name)
        kinds = [kind for kind, _ in events]
        assert "replace" in kinds, name
        renamed = events[kinds.index("replace")][1]
        synced = [where for kind, where in events[:kinds.index("replace")] if kind == "fsync"]
        assert renamed in synced, (name, events)  # the temporary file itself, before the rename
        assert kinds[-1] == "fsync"  # and the folder's entry after it


def _only(tmp_path, *names):
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_a_write_failing_midway_leaves_no_temporary_file(tmp_path):
    keep = write_text(tmp_path / "keep.txt", "old")
    with pytest.raises(OSError, match="disk full"), atomic_path(keep) as tmp:
        tmp.write_text("half of the new")
        raise OSError("disk full")
    assert keep.read_text() == "old"
    _only(tmp_path, "keep.txt")

    def half_savefig(path, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x89PNG half")
        raise KeyboardInterrupt

    fig = plt.figure()
    fig.savefig = half_savefig
    with pytest.raises(KeyboardInterrupt):
        save_figure(fig, tmp_path / "fig.png")
    _only(tmp_path, "keep.txt")
    assert not plt.fignum_exists(fig.number)  # closed even though saving failed


def test_figure_hooks_see_each_figure_before_it_is_written(tmp_path, monkeypatch):
    """save_figure hands every hook of FIGURE_HOOKS the figure, its path and the savefig
    arguments first (the test suite's figure lint is one); a hook that raises stops the
    write, leaves no file, and the figure is closed."""
    from toysae import _io

    seen = []

    def hook(fig, path, kwargs):
        seen.append((fig, path, dict(kwargs), path.exists()))

    monkeypatch.setattr(_io, "FIGURE_HOOKS", [hook])
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    path = save_figure(fig, tmp_path / "fig.png", dpi=150)
    assert seen == [(fig, path, {"dpi": 150, "bbox_inches": "tight"}, False)]
    assert path.stat().st_size > 0

    def refuse(fig, path, kwargs):
        raise ValueError("not this one")

    monkeypatch.setattr(_io, "FIGURE_HOOKS", [refuse])
    fig = plt.figure()
    with pytest.raises(ValueError, match="not this one"):
        save_figure(fig, tmp_path / "refused.png")
    _only(tmp_path, "fig.png")
    assert not plt.fignum_exists(fig.number)


def test_a_checkpoint_failing_midway_leaves_no_temporary_file(tmp_path, monkeypatch):
    """The checkpoint's bytes are written, then flushing them fails: the old file stays."""
    path = save(make_sae("relu", 3, 4, seed=1), tmp_path / "sae.safetensors")
    before = path.read_bytes()
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="I/O error"):
        save(make_sae("relu", 3, 4, seed=2), path)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert path.read_bytes() == before
    _only(tmp_path, "sae.safetensors")


# A real failing writer: the kernel refuses writes past RLIMIT_FSIZE (EFBIG, as a full disk
# or a quota refuses them with ENOSPC/EDQUOT), in a child process so pytest is unaffected.
_FULL_DISK = r"""
import hashlib, json, resource, signal, sys
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from toysae._io import save_figure, write_text
from toysae.sae import make_sae, save

out = Path(sys.argv[1])
def figure(n):
    fig, ax = plt.subplots()
    ax.imshow(np.random.default_rng(n).random((200, 200)))
    return fig
save(make_sae("relu", 4, 8), out / "sae.safetensors")
save_figure(figure(0), out / "fig.png")
write_text(out / "numbers.json", json.dumps({"x": 1}))
digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
errors = {}
for name, write in [("sae.safetensors", lambda p: save(make_sae("relu", 64, 256), p)),
                    ("fig.png", lambda p: save_figure(figure(1), p)),
                    ("numbers.json", lambda p: write_text(p, json.dumps(list(range(5000)))))]:
    try:
        write(out / name)
        errors[name] = None
    except OSError as err:
        errors[name] = [type(err).__name__, err.errno, str(err)]
print(json.dumps({"digests": digests, "errors": errors}))
"""


def test_a_write_the_disk_refuses_is_one_clear_error_and_keeps_the_previous_file(tmp_path):
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path)], text=True,
                          capture_output=True, timeout=120, env={**os.environ,
                                                                 "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    for name, error in report["errors"].items():
        assert error is not None, name
        kind, code, message = error
        assert kind == "OSError" and code == errno.EFBIG
        assert message == (f"writing {tmp_path / name} failed (File too large); any file "
                           "already there is unchanged")
    # The files written before the limit are byte for byte as they were; no temporary
    # file is left.
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert after == report["digests"] and sorted(after) == sorted(report["errors"])


def test_the_temporaries_a_killed_write_leaves_are_recognised_and_cleared(tmp_path):
    names = []
    for target in ("dense-1d.json", "run.safetensors", "notes"):
        with atomic_path(tmp_path / target) as tmp:
            names.append(tmp.name)
            tmp.write_text("x")
    with atomic_directory(tmp_path / "store") as tmp:
        names.append(tmp.name)
    with atomic_directory(tmp_path / "store") as tmp:  # replaces: an ".old." folder too
        names.append(tmp.name)
    assert all(is_leftover_temporary(n) for n in names), names
    # What a SIGKILL mid-write would leave: those names, still there.
    for n in names[:3]:
        (tmp_path / n).write_text("half")
    (tmp_path / names[3]).mkdir()
    old = tmp_path / ".store.old.0123456789ab"
    old.mkdir()
    (old / "file").write_text("y")
    keep = ["dense-1d.json", ".hidden", ".x.tmp", ".run.0123456789a.json", "a.0123456789ab"]
    for n in keep:
        (tmp_path / n).write_text("mine")
    assert not any(is_leftover_temporary(n) for n in keep)
    removed = remove_leftover_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([*names[:4], old.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {"run.safetensors", "notes", "store", *keep})
    assert remove_leftover_temporaries(tmp_path / "absent") == []
    assert file_sha256(tmp_path / ".hidden") == hashlib.sha256(b"mine").hexdigest()
