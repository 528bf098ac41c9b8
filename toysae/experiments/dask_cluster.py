"""Calls on a dask.distributed cluster, each reported as it ends: what ``toysae sweep
--backend dask`` runs its points on.

The cluster is a ``distributed.LocalCluster`` started here (worker processes with
one thread each, closed again when the sweep ends) or an existing scheduler given
by its address (``tcp://host:port``), such as one that ``dask-jobqueue`` starts on
Slurm (docs/design.md, "Sweeps on a cluster"). dask is the optional extra
``toysae[cluster]``; :func:`require_distributed` says so before any work.

A call that raises on its worker, or whose worker dies under it (a signal, the
out-of-memory killer, a crash), comes back as that call's error; the others go on.
Whether dask retries a call whose worker died is the scheduler's setting
``distributed.scheduler.allowed-failures``: the LocalCluster started here allows
none (:data:`LOCAL_ALLOWED_FAILURES`: on one machine a worker dying under a point
is that point's doing, and a retry would only kill a second worker), an existing
scheduler keeps its own (dask's default is 3 retries, which suits pre-empted nodes).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Callable, Iterator, Sequence

from toysae._validation import check_int

__all__ = ["EXTRA", "LOCAL_ALLOWED_FAILURES", "WorkerDied", "dask_client",
           "require_distributed", "run_calls"]

#: The optional dependencies that bring dask.distributed.
EXTRA = "toysae[cluster]"
#: Retries, on another worker, of a call whose worker died, in the LocalCluster started here.
LOCAL_ALLOWED_FAILURES = 0


def require_distributed(what: str = "backend='dask'") -> None:
    """A ValueError naming ``what`` and the extra to install when dask.distributed is
    not importable; nothing otherwise (it is not imported here)."""
    try:
        found = importlib.util.find_spec("distributed") is not None
    except (ImportError, ValueError):  # a broken or stubbed-out package
        found = False
    if not found:
        raise ValueError(f"{what} needs dask.distributed, which is not installed: "
                         f"pip install '{EXTRA}'")


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int = 1):
    """A ``distributed.Client`` on the scheduler at ``scheduler`` (an address such as
    ``tcp://host:port``), or, when it is None, on a LocalCluster of ``n_workers`` worker
    processes of one thread each, started here and closed on exit.

    An unreachable scheduler is an OSError naming its address (dask waits
    ``distributed.comm.timeouts.connect``, 30 s by default, before giving up).
    """
    require_distributed("backend='dask'")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise TypeError(f"scheduler must be a dask scheduler address such as "
                        f"'tcp://host:port', or None, got {scheduler!r}")
    n_workers = check_int(n_workers, "n_workers", minimum=1)
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            # No dashboard: it would take a fixed port (8787) and serve pages nobody asked
            # for. Worker restarts after a killed point are reported in the summary, so the
            # cluster's own warnings about them stay quiet.
            cluster = stack.enter_context(LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=logging.CRITICAL,
                scheduler_kwargs={"allowed_failures": LOCAL_ALLOWED_FAILURES}))
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(scheduler))
            except (OSError, TimeoutError, ValueError) as err:
                raise OSError(f"cannot reach the dask scheduler at {scheduler}: "
                              f"{' '.join(str(err).split())}") from err
        yield client


class WorkerDied(RuntimeError):
    """A call's dask worker died under it on every attempt the scheduler allows."""

    def __init__(self, attempts: int):
        super().__init__(f"the dask worker running it died (a signal, out of memory or a "
                         f"crash; the worker's log says which), on {attempts} attempt"
                         f"{'s' if attempts > 1 else ''}")
        self.attempts = attempts


def run_calls(client, fn: Callable, calls: Sequence[tuple], *,
              max_in_flight: int | None = None
              ) -> Iterator[tuple[int, object, Exception | None]]:
    """Submit ``fn(*args)`` for every ``args`` in ``calls`` to ``client``'s cluster and yield
    ``(index, value, None)`` as each returns, or ``(index, None, error)`` when it raised
    (its exception) or its worker died (:class:`WorkerDied`). Every call runs, even with
    equal arguments (nothing is taken from dask's cache of results).

    ``max_in_flight``: submit at most this many calls at a time, the next as one ends
    (None: all at once, for the scheduler to place). dask sends a worker more tasks than
    it has threads, and when a worker dies every task it holds counts as one death; on
    a fixed cluster of one-thread workers, a limit of its worker count keeps each worker
    to the call it runs, so a death is that call's alone. Leave it None on an adaptive
    cluster, which scales to the tasks it sees waiting.

    Leaving the generator early (an exception, Ctrl-C) cancels the calls not yet ended.
    """
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    if max_in_flight is not None:
        max_in_flight = check_int(max_in_flight, "max_in_flight", minimum=1)
    waiting = iter(enumerate(calls))
    futures: dict = {}

    def submit_next(ended) -> None:
        for k, args in waiting:
            future = client.submit(fn, *args, pure=False)
            futures[future] = k
            if ended is not None:
                ended.add(future)
            return

    for _ in range(len(calls) if max_in_flight is None else min(max_in_flight, len(calls))):
        submit_next(None)
    ended = as_completed(list(futures))
    try:
        for future in ended:
            k = futures[future]
            try:
                value = future.result()
            except KilledWorker as err:
                yield k, None, WorkerDied(err.allowed_failures + 1)
            except Exception as err:  # the call's own error, raised on its worker
                yield k, None, err
            else:
                yield k, value, None
            future.release()
            submit_next(ended)
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
