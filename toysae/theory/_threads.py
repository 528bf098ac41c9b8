"""Run small torch solves on one thread.

The sparse-coding solves behind the experiments are tiny (a few atoms, a few
thousand samples); on a shared 2-core machine torch's intra-op threads then
spend most of their time waiting for each other (measured: 390 FISTA
iterations on 300 x 4 took 2.7 s with 2 threads under load, 0.07 s with 1).
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Set ``torch.set_num_threads(n)`` inside the block and restore it afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
