"""The trained hosts shared by the tests of ``toysae.models`` (each is fitted once, on one
thread, as the tests' own ``one_thread`` fixtures had it)."""

import pytest

from toysae._threads import torch_threads
from toysae.models import ResidualToy, ResidualToyConfig, TMSConfig, TMSHost


@pytest.fixture(scope="session")
def host():
    """The residual toy at its default config, fitted; ``fit_report`` holds the fit."""
    model = ResidualToy(ResidualToyConfig())
    with torch_threads(1):
        model.fit_report = model.fit()
    return model


@pytest.fixture(scope="session")
def tms():
    """The toy model of superposition, fitted on 500,000 samples."""
    model = TMSHost(TMSConfig(train_samples=500_000))
    with torch_threads(1):
        model.fit_report = model.fit()
    return model


@pytest.fixture(scope="session")
def held(host):
    """Held-out samples of the residual toy."""
    return host.sample(4000, seed=99)
