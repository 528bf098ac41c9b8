"""Temporarily change torch's intra-op thread count.

Small problems (a toy SAE step, a working-set FISTA iteration) are long chains
of tiny tensor ops. Splitting each across threads buys nothing, and on a busy
machine every parallel region waits for a thread the OS has descheduled
(measured on a shared 2-core box: a 128x12x16 product took 22 ms on 2 threads
and 3 us on 1). Large problems keep the caller's thread count.
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run the block with ``torch.set_num_threads(n)`` and restore the count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def single_thread_if_small(work: float, threshold: float, device=None):
    """One thread while ``work`` (multiply-adds of the dominant op) is below ``threshold``
    on the CPU; otherwise leave the thread count alone."""
    on_cpu = device is None or torch.device(device).type == "cpu"
    if not on_cpu or work >= threshold or torch.get_num_threads() == 1:
        yield
        return
    with torch_threads(1):
        yield
