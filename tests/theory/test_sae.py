"""``toysae.theory.sae``: the amortisation gap of an SAE against exact sparse coding (zero
for an exact coder, positive for an SAE) and ``check_sae``'s report."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from theory_helpers import LAM, solve_codes, unit_rows

from toysae._threads import torch_threads
from toysae.dictionary_objective import dictionary_objective
from toysae.theory import amortisation_gap, check_sae

# --- SAE ----------------------------------------------------------------------------------

class _OracleSAE(torch.nn.Module):
    """Encodes with exact lasso codes: its amortisation gap must be 0."""

    def __init__(self, D, b):
        super().__init__()
        self.W = torch.nn.Parameter(torch.tensor(D))
        self.b_dec = torch.nn.Parameter(torch.tensor(b))

    @property
    def dictionary(self):
        return self.W

    def encode(self, x):
        X = x.numpy() - self.b_dec.detach().numpy()
        return torch.tensor(solve_codes(X, self.W.detach().numpy(), LAM))


def test_amortisation_gap_is_zero_for_exact_codes_and_positive_for_an_sae():
    from toysae.sae import make_sae

    rng = np.random.default_rng(6)
    X = rng.normal(size=(60, 4))
    D = unit_rows(rng.normal(size=(6, 4)))
    with torch_threads(1):
        oracle = amortisation_gap(_OracleSAE(D, np.full(4, 0.1)), X, LAM, tol=1e-10)
    assert oracle.solver_success and abs(oracle.gap) < 1e-6 * oracle.optimal_objective
    assert oracle.support_jaccard > 0.99 and oracle.sae_kkt_violation < 1e-6
    # both objectives are the package's one objective, bias included
    for Z, value in ((oracle.sae_codes, oracle.sae_objective),
                     (oracle.optimal_codes, oracle.optimal_objective)):
        assert value == pytest.approx(dictionary_objective(X, D, Z, LAM, bias=np.full(4, 0.1)),
                                      rel=1e-12)
    assert oracle.per_sample_gap.sum() == pytest.approx(oracle.gap, abs=1e-12)
    sae = make_sae("relu", 4, 6, seed=0)
    with torch_threads(1):
        rep = check_sae(sae, X.astype(np.float32), LAM, normalize=True)
    assert rep.amortisation.gap > 0 and rep.amortisation.sae_kkt_violation > 0.01
    assert rep.optimality.code.passed  # re-solved codes are optimal ...
    assert not rep.optimality.passed  # ... but an untrained decoder is not stationary


class _ExactCoder(torch.nn.Module):
    """Encodes with exact lasso codes: an exact sparse coder."""

    def __init__(self, D):
        super().__init__()
        self.W = torch.nn.Parameter(torch.tensor(D))

    @property
    def dictionary(self):
        return self.W

    def encode(self, x):
        return torch.tensor(solve_codes(x.numpy(), self.W.detach().numpy(), LAM))


def test_amortisation_passes_exactly_for_an_exact_sparse_coder():
    from toysae.sae import make_sae

    rng = np.random.default_rng(6)
    X = rng.normal(size=(50, 4))
    D = unit_rows(rng.normal(size=(6, 4)))
    with torch_threads(1):
        exact = amortisation_gap(_ExactCoder(D), X, LAM, tol=1e-10)
        sae = amortisation_gap(make_sae("relu", 4, 6, seed=0), X.astype(np.float32), LAM,
                               normalize=True)
    assert exact.passed and exact.solver_success and exact.code_tol == 1e-3
    assert exact.message.startswith("the encoder is an exact sparse coder")
    assert not sae.passed and sae.sae_kkt_violation > sae.code_tol
    assert sae.message.startswith("the encoder is not an exact sparse coder for its "
                                  f"dictionary: max code-KKT violation "
                                  f"{sae.sae_kkt_violation:.3g} > tol 0.001")
    # the verdict follows the tolerance it is given
    with torch_threads(1):
        loose = amortisation_gap(make_sae("relu", 4, 6, seed=0), X.astype(np.float32), LAM,
                                 normalize=True, code_tol=2 * sae.sae_kkt_violation)
    assert loose.passed
    with pytest.raises(ValueError, match="code_tol"):
        amortisation_gap(_ExactCoder(D), X, LAM, code_tol=-1.0)


def test_print_check_sae_says_passed_or_failed_for_each_part(capsys):
    from toysae.sae import make_sae

    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    with torch_threads(1):
        rep = check_sae(make_sae("relu", 4, 6, seed=0), X, LAM, normalize=True)
    print(rep)
    out = capsys.readouterr().out
    assert "?" not in out
    assert "amortisation: AmortisationReport(passed=False)" in out
    assert "optimality: OptimalityReport(passed=False)" in out
    assert "[FAIL] encoder: the encoder is not an exact sparse coder" in out
    assert "[FAIL] dictionary (with optimal codes) fails (3 of 5 checks fail):" in out
    for part in ("code KKT holds", "atom stationarity", "pair identity", "hierarchy"):
        assert part in out, part
    # an exact coder on a stationary dictionary passes both parts
    D = np.array([[1.0], [-1.0]])
    x = np.linspace(-2, 2, 41)[:, None]
    with torch_threads(1):
        good = check_sae(_ExactCoder(D), x, LAM, tol=1e-12)
    assert good.passed and good.amortisation.passed
    assert "[ok  ] encoder: the encoder is an exact sparse coder" in str(good)
    assert "[ok  ] dictionary (with optimal codes) passes every check" in str(good)
