"""``toysae.sae.config``: ``TrainConfig`` names the field it refuses and round-trips
through JSON."""

import pytest

from toysae.sae import TrainConfig


@pytest.mark.parametrize("field, value, kind", [
    ("lr", -1e-3, ValueError), ("lr", 0.0, ValueError), ("sparsity_coef", -0.1, ValueError),
    ("batch_size", 0, ValueError), ("batch_size", 2.0, TypeError), ("n_samples", 0, ValueError),
    ("lr_warmup", 1.5, ValueError), ("beta2", 1.0, ValueError), ("dead_window", 0, ValueError),
    ("resample_every", -1, ValueError), ("dead_latent_coef", -1.0, ValueError),
    ("dead_latent_coef", "on", TypeError), ("seed", -1, ValueError),
    ("divergence_factor", 1.0, ValueError),
])
def test_train_config_validation_names_the_field(field, value, kind):
    with pytest.raises(kind, match=field):
        TrainConfig(**{field: value})


def test_train_config_json_round_trip():
    cfg = TrainConfig(lr=3e-3, sparsity_coef=0.2, dead_latent_coef=1.0)
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="lr_warmup \\+ lr_decay"):
        TrainConfig(lr_warmup=0.6, lr_decay=0.6)
