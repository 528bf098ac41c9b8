"""Sparse autoencoders: one module per architecture behind one base class, one training
engine (``toysae.sae.engine``), checkpoints, batched ensembles and penalty x width grids.

The engine's parts, one job each: ``stacks`` (what a step trains), ``batches``
(which samples each step sees), ``schedules`` and ``resampling`` (per-step
coefficients, dead latents), ``engine`` (the loop, :class:`RunOptions`),
``callbacks`` (its per-step hooks) and ``train_state`` (checkpoints of a run).

``make_sae(name, d, width, **kwargs)`` builds any registered architecture
(``ARCHITECTURES``): relu, tied, topk, batchtopk, jumprelu, gated, matryoshka. Every
module of this package is imported with it, so an architecture in a file of its own
registers itself (docs/design.md, "Add an architecture").
``train_sae(sae, data, config)`` trains one; ``train_grid`` a grid of them.
``step_path("dense" | "sparse" | "auto")`` forces the path of the sparsity-aware
step (``toysae.sae._fused``; by default each batch's code density chooses).
"""

import importlib
import pkgutil

from toysae.sae._fused import step_path
from toysae.sae.base import (
    ARCHITECTURES,
    SAELoss,
    SAEOutput,
    SparseAutoencoder,
    make_sae,
    register,
)
from toysae.sae.batchtopk import BatchTopKSAE
from toysae.sae.callbacks import Callback, EvalFnCallback, StopTraining, TrainingState
from toysae.sae.checkpoint import load, save
from toysae.sae.config import TrainConfig
from toysae.sae.engine import (
    DATA_SCALE_RANGE,
    DataScaleWarning,
    RunOptions,
    TrainingDiverged,
    TrainResult,
    train_members,
    train_sae,
)
from toysae.sae.ensemble import ReLUSAEEnsemble, train_ensembles
from toysae.sae.gated import GatedSAE
from toysae.sae.grid import GridResult, train_grid, train_grid_sequential
from toysae.sae.jumprelu import JumpReLUSAE
from toysae.sae.l0_control import start_coef
from toysae.sae.matryoshka import MatryoshkaSAE
from toysae.sae.relu import ReLUSAE
from toysae.sae.resampling import resample_dead_latents_
from toysae.sae.stacks import MemberStack, SingleSAE
from toysae.sae.tied import TiedSAE
from toysae.sae.topk import TopKSAE
from toysae.sae.training_objective import LocalReconstruction, Objective

__all__ = ["ARCHITECTURES", "DATA_SCALE_RANGE", "BatchTopKSAE", "Callback", "DataScaleWarning",
           "EvalFnCallback", "GatedSAE", "GridResult", "JumpReLUSAE", "LocalReconstruction",
           "MatryoshkaSAE", "MemberStack", "Objective", "ReLUSAE", "ReLUSAEEnsemble", "RunOptions",
           "SAELoss", "SAEOutput", "SingleSAE", "SparseAutoencoder", "StopTraining", "TiedSAE",
           "TopKSAE", "TrainConfig", "TrainResult", "TrainingDiverged", "TrainingState", "load",
           "make_sae", "register", "resample_dead_latents_", "save", "start_coef", "step_path",
           "train_ensembles", "train_grid", "train_grid_sequential", "train_members",
           "train_sae"]


def _import_modules() -> None:
    """Import every module of this package, so that an architecture's module registers it
    (``register``) without being named here."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_modules()
