"""``sites_and_recipes.hierarchy``: the hierarchy study: tying blocks absorption and leaves
certified hierarchy steps; its findings call tied vs untied only where the intervals over
seeds separate."""

from __future__ import annotations

from types import SimpleNamespace

from toysae.experiments.sites_and_recipes.hierarchy import findings


def test_tying_blocks_absorption_and_leaves_certified_hierarchy_steps(quick):
    _, result = quick
    tied = [h for h in result.hierarchy if h.tied]
    untied = [h for h in result.hierarchy if not h.tied]
    assert untied and all(h.outcome == "absorption" for h in untied)
    assert all(h.optimal_nested == 0 and h.own_nested == 0 for h in untied)
    assert not any(h.outcome == "absorption" for h in tied)
    # every tied dictionary keeps a nested pair whose descent step the checker verifies
    assert all(h.optimal_certified >= 1 and h.optimal_drop > 0 for h in tied)


def _row(tied, seed, cos_parent, parent_on_child):
    return SimpleNamespace(tied=tied, seed=seed, outcome="hierarchy kept" if tied else
                           "absorption", child_atom_cos_parent=cos_parent,
                           parent_on_child=parent_on_child, child_on_parent_only=0.05,
                           optimal_nested=int(tied), optimal_certified=int(tied),
                           own_nested=int(tied), own_certified=int(tied))


def test_findings_compare_tied_and_untied_only_where_the_intervals_separate():
    rows = [_row(True, k, 0.10 + 0.01 * k, 0.9 + 0.05 * k) for k in range(3)] + \
        [_row(False, k, 0.50 + 0.01 * k, 0.95 - 0.05 * k) for k in range(3)]
    tied, untied, both = findings(SimpleNamespace(hierarchy=rows))
    assert tied.startswith("hierarchy, tied (3 seeds): outcomes {'hierarchy kept': 3}")
    assert "certified steps [1, 1, 1]" in tied and "certified steps [0, 0, 0]" in untied
    assert both.startswith("hierarchy, tied vs untied (means over 3 seeds, 95% intervals): ")
    assert "untied has higher child atom's cosine to the parent than tied" in both
    assert "share of child samples the parent atom fires on not resolved at 3 seeds" in both
    assert "tied has more certified steps with optimal codes than untied" in both
    one = findings(SimpleNamespace(hierarchy=[r for r in rows if r.seed == 1]))[2]
    assert "1 seed: no intervals" in one and " has " not in one
