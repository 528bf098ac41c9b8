"""Sparse autoencoders: one module per architecture behind one base class; trainer;
checkpoints; batched ensembles and penalty x width grid sweeps.

``make_sae(name, d, width, **kwargs)`` builds any registered architecture
(``ARCHITECTURES``): relu, tied, topk, batchtopk, jumprelu, gated.
"""

from toysae.sae.base import (
    ARCHITECTURES,
    SAELoss,
    SAEOutput,
    SparseAutoencoder,
    make_sae,
    register,
)
from toysae.sae.batchtopk import BatchTopKSAE
from toysae.sae.checkpoint import load, save
from toysae.sae.ensemble import EnsembleTrainResult, ReLUSAEEnsemble, train_ensembles
from toysae.sae.gated import GatedSAE
from toysae.sae.grid import GridMember, GridResult, train_grid, train_grid_sequential
from toysae.sae.jumprelu import JumpReLUSAE
from toysae.sae.relu import ReLUSAE
from toysae.sae.tied import TiedSAE
from toysae.sae.topk import TopKSAE
from toysae.sae.trainer import (
    TrainConfig,
    TrainingDiverged,
    TrainResult,
    resample_dead_latents_,
    train_sae,
)

__all__ = ["ARCHITECTURES", "BatchTopKSAE", "EnsembleTrainResult", "GatedSAE", "GridMember",
           "GridResult", "JumpReLUSAE", "ReLUSAE", "ReLUSAEEnsemble", "SAELoss", "SAEOutput",
           "SparseAutoencoder", "TiedSAE", "TopKSAE", "TrainConfig", "TrainResult",
           "TrainingDiverged", "load", "make_sae", "register", "resample_dead_latents_", "save",
           "train_ensembles", "train_grid", "train_grid_sequential", "train_sae"]
