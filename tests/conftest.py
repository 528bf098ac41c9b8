"""Session-wide test settings.

Hypothesis draws the same examples on every run (and on CI): a red or slow run can be
replayed, and no run depends on the luck of the draw.

Every figure a test saves through ``toysae._io.save_figure`` (so every experiment's figure,
from its own output test) is checked by ``toysae.plotting.figure_problems``; a test whose
figures have problems fails at teardown naming each figure's path and its problems. A test
that saves a deliberately bad figure says so with ``@pytest.mark.figure_problems_allowed``.
"""

import pytest
from hypothesis import settings

from toysae import _io

settings.register_profile("toysae", derandomize=True, database=None, print_blob=True)
settings.load_profile("toysae")


def pytest_configure(config):
    config.addinivalue_line("markers", "figure_problems_allowed: the figures this test saves "
                            "are not held to toysae.plotting.figure_problems")


@pytest.fixture(autouse=True)
def _figure_lint(request):
    if request.node.get_closest_marker("figure_problems_allowed"):
        yield
        return
    found = []

    def lint(fig, path, kwargs):
        from toysae.plotting import figure_problems

        problems = figure_problems(fig, dpi=kwargs.get("dpi"))
        if problems:
            found.append((path, problems))

    _io.FIGURE_HOOKS.append(lint)
    try:
        yield
    finally:
        _io.FIGURE_HOOKS.remove(lint)
    if found:
        pytest.fail("figure lint (toysae.plotting.figure_problems):\n" + "\n".join(
            f"{path}:\n" + "\n".join(f"  - {p}" for p in problems) for path, problems in found),
            pytrace=False)
