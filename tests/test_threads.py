"""``toysae._threads``: the thread count as an argument. A block runs on the count it asks
for and the caller's count comes back however the block ends; ``threads=None`` means one
thread for small CPU work and the caller's count otherwise; bad counts are refused."""

from __future__ import annotations

import pytest
import torch

from toysae._threads import check_threads, thread_count, torch_threads


@pytest.fixture
def two_threads():
    """The caller's count is 2 during the test (a count the blocks can differ from)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def test_torch_threads_sets_the_count_and_restores_it_even_on_an_error(two_threads):
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == two_threads
    with pytest.raises(RuntimeError, match="inside"), torch_threads(1):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == two_threads
    with torch_threads(two_threads):  # the count it already has: nothing to change
        assert torch.get_num_threads() == two_threads


def test_none_means_one_thread_for_small_cpu_work_only(two_threads):
    def inside(threads, work, device=None):
        with thread_count(threads, work=work, small_work=100, device=device):
            return torch.get_num_threads()

    assert inside(None, 99) == 1  # small: one thread
    assert inside(None, 100) == two_threads  # at the bar: the caller's count
    assert inside(None, 99, device="meta") == two_threads  # not the CPU: left alone
    assert inside(None, 99, device=torch.device("cpu")) == 1
    assert inside(1, 10 ** 9) == 1 and inside(2, 0) == 2  # an int is obeyed, whatever the work
    assert torch.get_num_threads() == two_threads


def test_check_threads_takes_none_or_a_positive_int_and_names_the_argument():
    assert check_threads(None) is None and check_threads(3) == 3
    with pytest.raises(ValueError, match="threads must be >= 1"):
        check_threads(0)
    with pytest.raises(TypeError, match="n_threads must be an int"):
        check_threads(1.5, "n_threads")
    with pytest.raises(TypeError, match="threads must be an int"):
        check_threads(True)
