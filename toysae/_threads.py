"""torch's intra-op thread count, as an argument of the calls that care.

torch has one process-wide thread count. Small problems (a toy SAE step, a
working-set FISTA iteration) are long chains of tiny tensor ops: splitting each
across threads buys nothing, and on a busy machine every parallel region waits
for a thread the OS has descheduled (measured on a shared 2-core box: a
128x12x16 product took 22 ms on 2 threads and 3 us on 1). So the solvers and
trainers take ``threads``: an int runs the call on exactly that many threads;
``None`` (the default) runs it on one thread when its work is below a size set
in :mod:`toysae._tuning` and leaves the caller's count alone otherwise. Either
way the count is restored when the call returns.
"""

from __future__ import annotations

import contextlib

import torch

from toysae._validation import check_int


def check_threads(threads, name: str = "threads") -> int | None:
    """``None`` or an int >= 1; TypeError/ValueError naming ``name`` otherwise."""
    return None if threads is None else check_int(threads, name, minimum=1)


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run the block with ``torch.set_num_threads(n)`` and restore the count afterwards."""
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def thread_count(threads: int | None, *, work: float, small_work: float, device=None):
    """The block runs on ``threads`` threads, or (``None``) on one when ``work`` < ``small_work``
    on the CPU; otherwise the caller's count is left as it is."""
    on_cpu = device is None or torch.device(device).type == "cpu"
    if threads is None:
        threads = 1 if on_cpu and work < small_work else torch.get_num_threads()
    with torch_threads(threads):
        yield

