"""Hypothesis draws the same examples on every run (and on CI): a red or slow run
can be replayed, and no run depends on the luck of the draw."""

from hypothesis import settings

settings.register_profile("toysae", derandomize=True, database=None, print_blob=True)
settings.load_profile("toysae")
