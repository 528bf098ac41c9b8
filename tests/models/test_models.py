"""``toysae.models`` (the package's ``__init__``): ``load_host`` reads back a host written
by ``host.save`` and refuses an untrained one."""

import pytest
import torch

from toysae._threads import torch_threads
from toysae.models import ResidualToy, ResidualToyConfig, load_host

SMALL = ResidualToyConfig()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):
        yield


def test_save_and_load_round_trip(host, tmp_path):
    path = host.save(tmp_path / "host.safetensors")
    back = load_host(path)
    for (k, a), (_, b) in zip(host.state_dict().items(), back.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert back.trained and back.config == host.config
    with pytest.raises(ValueError, match="untrained"):
        ResidualToy(SMALL).save(tmp_path / "raw.safetensors")
        load_host(tmp_path / "raw.safetensors")
