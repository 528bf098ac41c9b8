"""``toysae.experiments.hierarchy_absorption`` (hierarchy-absorption) at a small size: the
true hierarchy is certified and the learners remove the nesting (absorption or splitting);
its outputs are written."""

from __future__ import annotations

import numpy as np

from toysae.experiments import hierarchy_absorption, save_outputs


def test_hierarchy_truth_is_certified_and_learners_remove_the_nesting(tmp_path):
    cfg = hierarchy_absorption.Config(n_samples=1000, learn_epochs=15, sae_samples=100_000)
    result = hierarchy_absorption.run(cfg)
    truth, learned, sae = result.verdicts
    assert truth.outcome == "hierarchy kept" and truth.certified_drop > 0
    assert not truth.child_pair_in_hull and not truth.passed
    for v in (learned, sae):
        assert v.n_nested == 0 and v.outcome in ("absorption", "splitting"), v.explanation
        # the atom carrying the child has taken in part of the parent direction
        cos = np.asarray(v.cos_to_truth)
        assert cos[:, 1].max() > 0.7 and cos[np.argmax(cos[:, 1]), 0] > 0.2
    assert sae.amortisation_gap is not None and sae.amortisation_gap >= -1e-9
    assert len(save_outputs(hierarchy_absorption, result, tmp_path)) == 2
