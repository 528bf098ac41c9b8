"""``toysae.models.tms``: the toy model of superposition learns to superpose its features."""

import pytest

from toysae._threads import torch_threads
from toysae.models import TMSHost


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):
        yield


def test_tms_learns_in_superposition(tms):
    assert tms.fit_report.success
    assert tms.fit_report.metrics["loss"] <= TMSHost.MAX_LOSS_RATIO * \
        tms.fit_report.metrics["zero_loss"]
    norms = tms.W.detach().norm(dim=1)
    assert int((norms > 0.5).sum()) > tms.config.hidden  # more features stored than dimensions
