"""``toysae.sae.checkpoint``: SAE files: bit-exact round trips, identical bytes, atomic
saves, and every way a file can be wrong, refused before anything is built."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from toysae.sae import ARCHITECTURES, load, make_sae, save

KWARGS = {"topk": {"k": 3, "aux_k": 5}, "batchtopk": {"k": 3, "momentum": 0.2},
          "jumprelu": {"threshold_init": 0.02, "bandwidth": 0.03}}


def _trained_looking(name, seed=5):
    sae = make_sae(name, 7, 11, seed=seed, **KWARGS.get(name, {}))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn(p.shape, generator=gen))
    sae.train()
    sae(torch.rand(9, 7, generator=gen))  # BatchTopK: moves its threshold buffer
    return sae


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_round_trip_is_bit_exact(tmp_path, name):
    sae = _trained_looking(name)
    path = save(sae, tmp_path / "sae.safetensors")
    back = load(path)
    assert type(back) is type(sae) and back.config() == sae.config()
    assert not back.training
    a, b = sae.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    if name == "batchtopk":
        assert float(back.threshold) != 0.0
    sae.eval()
    x = torch.rand(5, 7)
    assert torch.equal(sae(x).x_hat, back(x).x_hat)
    assert load(path, architecture=name).config() == sae.config()
    assert [p.name for p in tmp_path.iterdir()] == ["sae.safetensors"]  # no temp files left


def test_other_architecture_is_refused(tmp_path):
    path = save(_trained_looking("relu"), tmp_path / "relu.safetensors")
    with pytest.raises(ValueError, match="architecture: asked for 'topk'"):
        load(path, architecture="topk")
    with pytest.raises(ValueError, match="architecture must be one of"):
        load(path, architecture="nope")


def test_truncated_file_is_refused(tmp_path):
    path = save(_trained_looking("gated"), tmp_path / "g.safetensors")
    data = path.read_bytes()
    for cut in (len(data) - 7, len(data) // 2, 20, 3):
        broken = tmp_path / f"cut{cut}.safetensors"
        broken.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a readable safetensors file"):
            load(broken)


def test_foreign_files_are_refused(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(plain))
    with pytest.raises(ValueError, match="not a toysae SAE checkpoint"):
        load(plain)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x80\x04\x95 pickle-ish bytes, certainly not safetensors" * 3)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load(junk)
    meta = {"format": "toysae-sae", "version": "1", "architecture": "relu",
            "config": json.dumps({"d": 7, "width": 11, "seed": 0})}
    wrong = tmp_path / "wrong.safetensors"
    save_file({"W_enc": torch.zeros(7, 11)}, str(wrong), metadata=meta)
    with pytest.raises(ValueError, match="do not match a relu SAE"):
        load(wrong)
    meta_bad = {**meta, "config": "{not json"}
    save_file({"W_enc": torch.zeros(7, 11)}, str(wrong), metadata=meta_bad)
    with pytest.raises(ValueError, match="corrupt config"):
        load(wrong)
    with pytest.raises(ValueError, match="version"):
        save_file({"W_enc": torch.zeros(7, 11)}, str(wrong), metadata={**meta, "version": "9"})
        load(wrong)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.safetensors")


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = save(_trained_looking("relu", seed=1), tmp_path / "keep.safetensors")
    before = path.read_bytes()

    class FullDisk:
        """A file that takes the header length, then fails: the disk filled up midway."""

        def __init__(self, name, mode):
            self.f, self.writes = open(name, mode), 0

        def write(self, data):
            self.writes += 1
            if self.writes > 1:
                raise OSError("disk full")
            return self.f.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr("toysae._io.open", FullDisk, raising=False)  # what _io writes with
    with pytest.raises(OSError, match="disk full"):
        save(_trained_looking("relu", seed=2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.safetensors"]


def test_save_rejects_non_sae(tmp_path):
    with pytest.raises(TypeError, match="sae"):
        save(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_the_same_sae_saved_twice_gives_identical_bytes(tmp_path, name):
    sae = _trained_looking(name)
    first = save(sae, tmp_path / "a.safetensors").read_bytes()
    for k in range(8):  # the metadata's order must not depend on hashing
        assert save(sae, tmp_path / f"b{k}.safetensors").read_bytes() == first
    assert save(load(tmp_path / "a.safetensors"), tmp_path / "c.safetensors").read_bytes() \
        == first


def _checkpoint(path, config, tensors=None, **meta):
    """A relu checkpoint with the given config dict (and optional tensors / metadata)."""
    tensors = tensors if tensors is not None else make_sae("relu", 7, 11).state_dict()
    metadata = {"format": "toysae-sae", "version": "1", "architecture": "relu",
                "config": json.dumps(config), **meta}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


@pytest.fixture
def nothing_built(monkeypatch):
    """Fail if an SAE is built anywhere but on the meta device, or a tensor is read."""
    import toysae.sae.checkpoint as checkpoint

    real = checkpoint.make_sae

    def meta_only(*args, **kwargs):
        assert torch.empty(0).device.type == "meta", "an SAE was built before validation"
        return real(*args, **kwargs)

    def no_reading(*args, **kwargs):
        raise AssertionError("tensors were read before the metadata was validated")

    monkeypatch.setattr(checkpoint, "make_sae", meta_only)
    monkeypatch.setattr("safetensors.safe_open", no_reading)
    monkeypatch.setattr("toysae._io.read_safetensors", no_reading, raising=False)


@pytest.mark.parametrize("config, match", [
    ({"d": 7, "width": 11, "seed": 0, "widht": 3}, "unknown config key.*widht"),
    ({"d": 7, "seed": 0}, "config lacks.*width"),
    ({"d": 7, "width": 2**40, "seed": 0}, r"width must be <= 67108864"),
    ({"d": 2**30, "width": 11, "seed": 0}, r"d must be <= 1048576"),
    ({"d": 7.0, "width": 11, "seed": 0}, "d must be an int"),
    ({"d": 7, "width": 13, "seed": 0},
     r"W_dec: the file has F32 \(11, 7\), the SAE has F32 \(13, 7\)"),
    ({"d": 7, "width": 11, "seed": -1}, "seed must be >= 0"),
    ({"d": 7, "width": 11, "decoder_bias": "yes"}, "decoder_bias must be a bool"),
])
def test_metadata_is_validated_before_anything_is_built(tmp_path, nothing_built, config,
                                                        match):
    path = _checkpoint(tmp_path / "c.safetensors", config)
    with pytest.raises(ValueError, match=match):
        load(path)


def test_unknown_metadata_and_foreign_tensors_are_refused_unread(tmp_path, nothing_built):
    good = {"d": 7, "width": 11, "seed": 0}
    path = _checkpoint(tmp_path / "m.safetensors", good, extra="1")
    with pytest.raises(ValueError, match="unknown metadata key.*extra"):
        load(path)
    tensors = {**make_sae("relu", 7, 11).state_dict(), "stowaway": torch.zeros(10**5)}
    path = _checkpoint(tmp_path / "t.safetensors", good, tensors)
    with pytest.raises(ValueError, match=r"not in the SAE: \['stowaway'\]"):
        load(path)
    wrong_dtype = {k: v.double() for k, v in make_sae("relu", 7, 11).state_dict().items()}
    with pytest.raises(ValueError, match="W_dec: the file has F64"):
        load(_checkpoint(tmp_path / "f.safetensors", good, wrong_dtype))


def test_a_header_that_lies_about_the_data_is_refused(tmp_path):
    path = save(make_sae("relu", 7, 11), tmp_path / "sae.safetensors")
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["W_dec"]["shape"] = [11000, 7]  # claims far more than the file holds
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    lying = tmp_path / "lying.safetensors"
    lying.write_bytes(len(text).to_bytes(8, "little") + text + bytes(data[8 + n:]))
    with pytest.raises(ValueError, match="W_dec.*needs 308000 bytes"):
        load(lying)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((2**62).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match="header claims"):
        load(huge)


def test_the_training_coefficient_is_recorded_and_its_entry_validated(tmp_path, nothing_built):
    from toysae.sae.checkpoint import training_info

    sae = make_sae("relu", 7, 11)
    assert training_info(save(sae, tmp_path / "plain.safetensors")) == {}
    path = save(sae, tmp_path / "coef.safetensors", sparsity_coef=0.25)
    assert training_info(path) == {"sparsity_coef": 0.25}
    with pytest.raises(ValueError, match="sparsity_coef must be >= 0"):
        save(sae, tmp_path / "neg.safetensors", sparsity_coef=-1.0)
    good = {"d": 7, "width": 11, "seed": 0}
    for entry, match in [('{"lr": 1}', r"unknown field\(s\) \['lr'\]"),
                         ('[0.1]', "must be a JSON object"), ("{", "is not JSON"),
                         ('{"sparsity_coef": "big"}', "bad sparsity_coef")]:
        with pytest.raises(ValueError, match=match):
            load(_checkpoint(tmp_path / "t.safetensors", good, training=entry))


def test_loading_a_checkpoint_stays_off_torchs_compiler(tmp_path):
    # The metadata check builds the SAE on the meta device; a random draw there imports
    # torch._dynamo, seconds on every `toysae check`.
    path = tmp_path / "sae.safetensors"
    save(make_sae("topk", 6, 10, k=2, seed=0), path)
    code = ("import sys; from toysae.sae.checkpoint import load; "
            f"load({str(path)!r}); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
