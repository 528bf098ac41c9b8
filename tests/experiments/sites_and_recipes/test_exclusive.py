"""``sites_and_recipes.exclusive``: the exclusive-partners study: untied encoders denoise
exclusive partners."""

from __future__ import annotations


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
