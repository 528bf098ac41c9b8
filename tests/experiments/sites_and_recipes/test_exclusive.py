"""``sites_and_recipes.exclusive``: the exclusive-partners study: untied encoders denoise
exclusive partners; its findings call tied vs untied only where the intervals over seeds
separate."""

from __future__ import annotations

from types import SimpleNamespace

from toysae.experiments.sites_and_recipes.exclusive import findings
from toysae.stats import mean_interval


def test_untied_encoders_denoise_exclusive_partners(quick):
    _, result = quick
    for c in sorted({e.cos for e in result.exclusive}):
        tied = [e for e in result.exclusive if e.cos == c and e.tied]
        untied = [e for e in result.exclusive if e.cos == c and not e.tied]
        if c == 0:  # orthogonal partners: nothing to denoise, both exact
            assert max(e.partner_false_positive for e in tied + untied) < 0.01
            continue
        # measured: tied fires on ~50-59% of partner-only samples, untied on 0%
        assert min(e.partner_false_positive for e in tied) > 0.3
        assert max(e.partner_false_positive for e in untied) < 0.05
        assert max(e.code_error for e in untied) < min(e.code_error for e in tied)
        assert max(e.amortisation_gap for e in untied) < min(e.amortisation_gap for e in tied)


def _row(cos, tied, seed, pfp, mmcs):
    return SimpleNamespace(cos=cos, tied=tied, seed=seed, partner_false_positive=pfp,
                           code_error=0.1, mmcs=mmcs, amortisation_gap=0.01)


def test_findings_compare_tied_and_untied_only_where_the_intervals_separate():
    rows = [_row(0.6, True, k, 0.50 + 0.01 * k, 0.90 + 0.05 * k) for k in range(3)] + \
        [_row(0.6, False, k, 0.01 * k, 0.95 - 0.05 * k) for k in range(3)]
    (text,) = findings(SimpleNamespace(exclusive=rows))
    assert text.startswith("exclusive pairs at cosine 0.6, tied vs untied (means over 3 "
                           "seeds, 95% intervals): ")
    tied_fp = mean_interval([0.50, 0.51, 0.52])
    assert (f"tied has higher share of partner-only samples a latent fires on than untied "
            f"(tied {tied_fp.format(3)} vs untied ") in text
    assert "MMCS not resolved at 3 seeds" in text  # the seeds spread over each other
    assert "code error not resolved at 3 seeds" in text  # the same everywhere
    (one,) = findings(SimpleNamespace(exclusive=[r for r in rows if r.seed == 0]))
    assert "1 seed: no intervals" in one and one.count("not resolved at 1 seed") == 4
