"""``sites_and_recipes.hierarchy``: the hierarchy study: tying blocks absorption and leaves
certified hierarchy steps."""

from __future__ import annotations


def test_tying_blocks_absorption_and_leaves_certified_hierarchy_steps(quick):
    _, result = quick
    tied = [h for h in result.hierarchy if h.tied]
    untied = [h for h in result.hierarchy if not h.tied]
    assert untied and all(h.outcome == "absorption" for h in untied)
    assert all(h.optimal_nested == 0 and h.own_nested == 0 for h in untied)
    assert not any(h.outcome == "absorption" for h in tied)
    # every tied dictionary keeps a nested pair whose descent step the checker verifies
    assert all(h.optimal_certified >= 1 and h.optimal_drop > 0 for h in tied)
