"""``toysae.experiments.dask_cluster``: calls on a real dask.distributed LocalCluster, each
reported as it ends (values, raised errors, a worker that died), the extra named when
dask is missing, an unreachable scheduler named."""

import operator
import os
import sys

import pytest

from toysae.experiments.dask_cluster import (
    EXTRA,
    LOCAL_ALLOWED_FAILURES,
    WorkerDied,
    dask_client,
    require_distributed,
    run_calls,
)


def test_a_missing_dask_names_the_extra(monkeypatch):
    require_distributed()  # the dev extras include it
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(ValueError, match=r"^the thing needs dask.distributed, which is not "
                                         r"installed: pip install 'toysae\[cluster\]'$"):
        require_distributed("the thing")
    with pytest.raises(ValueError, match="pip install"), dask_client():
        pass
    assert EXTRA == "toysae[cluster]"


def test_bad_schedulers_are_named():
    import dask
    import distributed  # noqa: F401 (its defaults join dask's config before the set below,
    # whose exit would otherwise remove them with the key it added)

    for bad in ("", "  ", 5):
        with pytest.raises(TypeError, match="scheduler must be a dask scheduler address"), \
                dask_client(bad):
            pass
    with pytest.raises(TypeError, match="n_workers"), dask_client(None, 1.5):
        pass
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
            pytest.raises(OSError, match="cannot reach the dask scheduler at tcp://127.0.0.1:9"), \
            dask_client("tcp://127.0.0.1:9"):
        pass


@pytest.mark.slow
def test_calls_come_back_as_values_errors_or_a_dead_worker():
    with dask_client(None, 1) as client:
        assert len(client.scheduler_info()["workers"]) == 1
        with pytest.raises(ValueError, match="max_in_flight"):
            next(run_calls(client, operator.truediv, [(1, 2)], max_in_flight=0))
        got = list(run_calls(client, operator.truediv, [(1, 2), (1, 0), (3, 4), (1, 2)],
                             max_in_flight=1))
        # One at a time on one worker: they end in order; equal calls both run.
        assert [(k, v) for k, v, _ in got] == [(0, 0.5), (1, None), (2, 0.75), (3, 0.5)]
        assert isinstance(got[1][2], ZeroDivisionError)
        assert [e for _, _, e in got if e is not got[1][2]] == [None] * 3
        # A call that ends its worker's process: reported, with no retry (allowed none).
        [(k, value, err)] = run_calls(client, os._exit, [(3,)])
        assert (k, value) == (0, None) and isinstance(err, WorkerDied)
        assert err.attempts == LOCAL_ALLOWED_FAILURES + 1 == 1
        assert str(err).startswith("the dask worker running it died") and \
            str(err).endswith("on 1 attempt")
        # The nanny restarts the worker: later calls run.
        assert [v for _, v, _ in run_calls(client, operator.add, [(1, 2)])] == [3]
    assert client.status == "closed"
