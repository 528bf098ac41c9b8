"""The fixture the tests of refused SAELens directories share (tests/interop/)."""

import pytest

from toysae.interop import saelens as saelens_module


@pytest.fixture
def nothing_built(monkeypatch):
    """Validation comes first: no SAE may be built for a directory that is refused."""
    def refuse(*args, **kwargs):
        raise AssertionError("an SAE was built for a bad directory")

    monkeypatch.setattr(saelens_module, "make_sae", refuse)
