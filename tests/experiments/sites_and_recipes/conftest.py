"""The sites-and-recipes quick run, shared by the tests of the experiment (its
``__init__``) and of each study module."""

from __future__ import annotations

import pytest

from toysae.experiments import sites_and_recipes


@pytest.fixture(scope="session")
def quick():
    """The quick run, once for every test of the experiment and its studies."""
    config = sites_and_recipes.Config.quick()
    return config, sites_and_recipes.run(config)
