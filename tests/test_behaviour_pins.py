"""Bit-for-bit pins of fixed-seed training runs: a refactor may move code, never numbers.

Each case trains a small, fixed-seed run on one thread and hashes its final
parameters (and, for the grid, every member's dictionary). The hashes were recorded
before the engine was split by job (issue: one job per module), so a change that moves
a single rounding anywhere in a training step fails here.

Float results are bit-identical only on the same CPU and the same torch build, so the
pins are keyed by that platform; on another platform the test skips, saying how to
record them (``python tests/test_behaviour_pins.py`` prints the table for this one).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

PINS = Path(__file__).with_name("behaviour_pins.json")


def platform_key() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    return f"{cpu} | torch {torch.__version__} | numpy {np.__version__}"


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:32]


def _small_data():
    from toysae.data import SyntheticConfig, SyntheticData

    return SyntheticData(SyntheticConfig(d=16, n_features=24, mean_active=3.0,
                                         correlation="none", seed=1))


def _architecture_case(name: str, path: str = "auto") -> str:
    from toysae.sae import TrainConfig, step_path, train_sae

    kwargs = {"topk": {"k": 3}, "batchtopk": {"k": 3}, "matryoshka": {"k": 3}}.get(name, {})
    cfg = TrainConfig(n_samples=6_000, batch_size=64, lr=3e-3, sparsity_coef=0.05,
                      log_every=20, seed=2)
    with step_path(path):
        res = train_sae(name, _small_data(), cfg, width=32, sae_kwargs=kwargs, progress=False,
                        threads=1)
    return _digest(dict(res.sae.state_dict()))


def _resampling_case() -> str:
    from toysae.sae import TrainConfig, train_sae

    cfg = TrainConfig(n_samples=8_000, batch_size=64, lr=3e-3, sparsity_coef=1.0,
                      dead_window=10, resample_every=40, resample_until=0.8,
                      resample_pool=512, log_every=25, seed=3)
    res = train_sae("relu", _small_data(), cfg, width=96, progress=False, threads=1)
    assert res.n_resampled > 0, "the resampling case must resample to pin it"
    return _digest(dict(res.sae.state_dict()))


def _grid_case() -> str:
    from toysae.sae import TrainConfig, train_grid

    cfg = TrainConfig(n_samples=5_000, batch_size=64, lr=3e-3, log_every=20, seed=4)
    grid = train_grid(_small_data(), [0.02, 0.2], [16, 40], cfg, progress=False, seed=5,
                      threads=1)
    return _digest({f"member.{k}.{name}": value for k, r in enumerate(grid.members)
                    for name, value in r.sae.state_dict().items()})


def _e2e_case() -> str:
    from toysae.models import ResidualToy, ResidualToyConfig, SiteObjective
    from toysae.sae import ReLUSAE, TrainConfig, train_sae

    host = ResidualToy(ResidualToyConfig())
    host.fit()
    sae = ReLUSAE(32, 40, seed=6)
    cfg = TrainConfig(n_samples=4_000, batch_size=64, lr=3e-3, sparsity_coef=0.05,
                      log_every=20, seed=7)
    train_sae(sae, host.data, cfg, objective=SiteObjective(host, "resid_pre", "e2e_ds"),
              progress=False, threads=1)
    return _digest({**dict(sae.state_dict()),
                    **{f"host.{k}": v for k, v in host.state_dict().items()}})


ARCHITECTURE_NAMES = ("relu", "tied", "topk", "batchtopk", "matryoshka", "jumprelu", "gated")
CASES = {**{f"train_sae[{n}]": (lambda n=n: _architecture_case(n)) for n in ARCHITECTURE_NAMES},
         # the sparse step of the architectures that have one (toysae.sae._fused)
         **{f"train_sae[{n}, sparse step]": (lambda n=n: _architecture_case(n, "sparse"))
            for n in ("relu", "topk", "batchtopk", "matryoshka", "jumprelu")},
         "train_sae[relu, resampling]": _resampling_case,
         "train_grid": _grid_case,
         "train_sae[e2e_ds]": _e2e_case}


def _pins() -> dict[str, str]:
    table = json.loads(PINS.read_text()) if PINS.exists() else {}
    key = platform_key()
    if key not in table:
        pytest.skip(f"no behaviour pins recorded for this platform ({key}); record them with "
                    f"`python {Path(__file__).name}` on the commit before a refactor")
    return table[key]


@pytest.mark.parametrize("case", sorted(CASES))
def test_fixed_seed_run_is_bit_identical_to_its_pin(case):
    pins = _pins()
    assert case in pins, f"{case} has no pin"
    assert CASES[case]() == pins[case], f"{case}: the final parameters changed bit-wise"


def test_digest_sees_a_one_ulp_change():
    t = {"w": torch.linspace(0, 1, 10)}
    nudged = t["w"].clone()
    nudged[3] = torch.nextafter(nudged[3], torch.tensor(2.0))
    assert _digest(t) != _digest({"w": nudged})
    assert _digest(t) == _digest({"w": t["w"].clone()})


if __name__ == "__main__":  # record the pins of this platform at the current commit
    torch.set_num_threads(1)
    table = json.loads(PINS.read_text()) if PINS.exists() else {}
    table[platform_key()] = {case: fn() for case, fn in sorted(CASES.items())}
    PINS.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    json.dump(table[platform_key()], sys.stdout, indent=1)
