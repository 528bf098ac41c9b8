"""``toysae.sae.schedules``: the learning-rate and sparsity-coefficient schedules."""

import pytest

from toysae.sae.schedules import lr_schedule, sparsity_schedule


def test_schedules():
    assert lr_schedule(0, 100, 0.1, 0.2) == pytest.approx(0.1)
    assert lr_schedule(9, 100, 0.1, 0.2) == pytest.approx(1.0)
    assert lr_schedule(50, 100, 0.1, 0.2) == 1.0
    assert lr_schedule(90, 100, 0.1, 0.2) == pytest.approx(0.5)
    assert lr_schedule(99, 100, 0.1, 0.2) == pytest.approx(0.05)
    assert sparsity_schedule(4, 100, 0.1) == pytest.approx(0.5)
    assert sparsity_schedule(50, 100, 0.1) == 1.0 and sparsity_schedule(0, 100, 0.0) == 1.0
