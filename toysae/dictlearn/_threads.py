"""One CPU thread for small solves.

A small solve is a long chain of tiny tensor ops; splitting each across
threads buys nothing and, on a busy machine, every op waits for a thread the
OS has descheduled (measured: a (256, 8) @ (8, 8) product took 0.6 ms with
2 threads and 11 us with 1 on the shared 2-core box). Larger solves keep the
caller's ``torch.get_num_threads()``.
"""

from __future__ import annotations

import contextlib

import torch

SMALL_WORK = 2**22  # multiply-adds of one dense iteration (n * k * k)


@contextlib.contextmanager
def single_thread_if_small(work: float, device: torch.device):
    if device.type != "cpu" or work >= SMALL_WORK or torch.get_num_threads() == 1:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
