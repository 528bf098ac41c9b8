"""Sparse autoencoders: one module per architecture behind one base class; trainer; checkpoints."""

from toysae.sae.base import (
    ARCHITECTURES,
    SAELoss,
    SAEOutput,
    SparseAutoencoder,
    make_sae,
    register,
)
from toysae.sae.relu import ReLUSAE
from toysae.sae.trainer import TrainConfig, TrainingDiverged, TrainResult, train_sae

__all__ = ["ARCHITECTURES", "ReLUSAE", "SAELoss", "SAEOutput", "SparseAutoencoder", "make_sae",
           "register", "TrainConfig", "TrainResult", "TrainingDiverged", "train_sae"]
