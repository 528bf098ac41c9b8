"""Child processes that tests stop with real signals (SIGKILL, SIGINT): the toysae under
test on their path, each in its own session so a signal can go to its whole process
group as a terminal's Ctrl-C does, and waits that fail with what the child printed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child_env(**extra: str) -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH, matplotlib drawing off
    screen, and ``extra`` on top."""
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg", **extra}


def start(argv: list[str], *, cwd: str | os.PathLike | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``python argv...`` in a new session (in the checkout unless ``cwd`` is given:
    ``python -m`` puts the working directory first on the path), stdout and stderr to
    pipes (text)."""
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT if cwd is None else cwd,
                            env=env or child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default. A test run started in the
    background of a non-interactive shell (``make test &``, a CI runner) inherits SIGINT
    ignored, and Python then installs no KeyboardInterrupt handler: the Ctrl-C tests would
    test nothing but that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until(done: Callable[[], bool], child: subprocess.Popen, *, timeout: float = 60.0,
               what: str = "the condition", poll: float = 0.01) -> None:
    """Poll ``done()`` every ``poll`` seconds while ``child`` runs; fail (with its output)
    when it ends first or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while not done():
        if child.poll() is not None or time.monotonic() > end:
            kill_group(child, signal.SIGKILL)
            out, err = child.communicate(timeout=30)
            raise AssertionError(f"{what} never held (exit {child.returncode}):\n{out}\n{err}")
        time.sleep(poll)


def kill_group(child: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the child's whole process group (the child and its workers)."""
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        pass


def finish(child: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str, str]:
    """Wait for the child; (exit code, stdout, stderr). Its group is killed on timeout."""
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(child, signal.SIGKILL)
        out, err = child.communicate(timeout=30)
        raise AssertionError(f"the child did not end in {timeout} s:\n{out}\n{err}") from None
    return child.returncode, out, err
