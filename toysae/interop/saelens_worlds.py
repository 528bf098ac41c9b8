"""SAELens's synthetic worlds as toysae ground truth (docs/interop.md, "SAELens's worlds").

:class:`SAELensWorld` wraps a SAELens ``sae_lens.synthetic.SyntheticModel`` (built from
its ``SyntheticModelConfig``, or loaded from a directory ``SyntheticModel.save`` wrote)
as a :class:`toysae.data.GroundTruthData`, so toysae trains on it (``train_sae``,
``train_grid``), scores against it (``toysae.metrics``) and runs its experiments on it,
with SAELens's own features (orthogonalised as SAELens made them), bias, firing,
hierarchy and sampler. :func:`synth_sae_bench_config` writes out SAELens's published
SynthSAEBench-16k configuration, optionally reduced.

Both need the ``sae-lens`` package, which toysae's ``dev`` extra pins
(``pip install 'toysae[dev]'``); importing this module (or toysae) does not import it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from collections import deque
from pathlib import Path

import numpy as np
import torch

from toysae._io import read_safetensors_header
from toysae._validation import check_int, check_seed
from toysae.data.source import Batch, GroundTruthData

__all__ = ["SAELensWorld", "synth_sae_bench_config"]

#: The files ``SyntheticModel.save`` writes (the hierarchy's only when there is one).
CONFIG_FILENAME = "synthetic_model_config.json"
WEIGHTS_FILENAME = "synthetic_model.safetensors"
HIERARCHY_FILENAME = "hierarchy.json"
#: The toysae extra that installs sae-lens.
EXTRA = "dev"


def _synthetic():
    """``sae_lens.synthetic``, or an ImportError that says how to install it."""
    try:
        import sae_lens.synthetic as synthetic
    except ImportError as err:
        raise ImportError(f"SAELens's synthetic worlds need the sae-lens package, which is not "
                          f"installed ({err}); install toysae's {EXTRA!r} extra: "
                          f"pip install 'toysae[{EXTRA}]'") from err
    return synthetic


def synth_sae_bench_config(reduction: int = 1, *, seed: int = 42):
    """SAELens's ``SyntheticModelConfig`` of SynthSAEBench-16k (Chanin & Garriga-Alonso
    2026, arXiv 2602.14687), as published: SAELens ``docs/synth_sae_bench.md`` and
    decoderesearch/synth-sae-bench-experiments,
    ``experiments/create_synth_bench_16k_model.py``.

    16,384 features in a hidden dimension of 768; Zipfian firing (exponent 0.5,
    probabilities 0.4 down to 5e-4); 128 root nodes of branching 4 and ``max_depth=3``,
    every parent's children mutually exclusive, probabilities compensated, children
    scaled by their parent; low-rank correlation of rank 25 and scale 0.1; the
    dictionary orthogonalised by 100 steps at lr 3e-4; mean magnitudes linear from
    5.0 to 4.0, their spreads folded normal (mean 0.5, std 0.5); a bias of norm 0.5;
    seed 42.

    reduction : divides the features, the hidden dimension and the root nodes (a
        divisor of 128), keeping the superposition ratio and the hierarchy's share;
        the rest is unchanged (toysae's ``SyntheticConfig.synth_sae_bench(reduction)``
        is the same world in toysae's generator).
    """
    reduction = check_int(reduction, "reduction", minimum=1)
    if 128 % reduction:
        raise ValueError(f"reduction must divide 128 (the number of root nodes), got {reduction}")
    check_seed(seed)
    s = _synthetic()
    return s.SyntheticModelConfig(
        num_features=16_384 // reduction, hidden_dim=768 // reduction,
        firing_probability=s.ZipfianFiringProbabilityConfig(
            exponent=0.5, max_prob=0.4, min_prob=5e-4),
        hierarchy=s.HierarchyConfig(
            total_root_nodes=128 // reduction, branching_factor=4, max_depth=3,
            mutually_exclusive_portion=1.0, mutually_exclusive_min_depth=0,
            compensate_probabilities=True, scale_children_by_parent=True),
        orthogonalization=s.OrthogonalizationConfig(num_steps=100, lr=3e-4),
        correlation=s.LowRankCorrelationConfig(rank=25, correlation_scale=0.1),
        mean_firing_magnitudes=s.LinearMagnitudeConfig(start=5.0, end=4.0),
        std_firing_magnitudes=s.FoldedNormalMagnitudeConfig(mean=0.5, std=0.5),
        bias=0.5, seed=seed)


def _check_directory(path: Path) -> None:
    """That ``path`` holds a saved SyntheticModel whose weights fit its config, from the
    config and the weight file's header alone (nothing of SAELens imported)."""
    if not path.is_dir():
        raise ValueError(f"source: {path} is not a directory (a SAELens synthetic model is "
                         f"the directory SyntheticModel.save writes)")
    config, weights = path / CONFIG_FILENAME, path / WEIGHTS_FILENAME
    if not config.is_file():
        if (path / "cfg.json").is_file():
            raise ValueError(f"source: {path} is a SAELens SAE directory (cfg.json), not a "
                             "synthetic model; load an SAE with toysae.interop.load_saelens")
        raise ValueError(f"source: {path} is not a SAELens synthetic model: it has no "
                         f"{CONFIG_FILENAME}")
    try:
        raw = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"source: {config} is not valid JSON: {err}") from err
    sizes = {}
    for key in ("num_features", "hidden_dim"):
        value = raw.get(key) if isinstance(raw, dict) else None
        if type(value) is not int or value < 1:
            raise ValueError(f"source: {config} is not a SyntheticModel config: {key} is "
                             f"{value!r}, not a positive int")
        sizes[key] = value
    if not weights.is_file():
        raise ValueError(f"source: {path} is not a SAELens synthetic model: it has no "
                         f"{WEIGHTS_FILENAME}")
    _, shapes = read_safetensors_header(weights, "SAELens synthetic model")
    n, d = sizes["num_features"], sizes["hidden_dim"]
    for name, shape in {"feature_vectors": (n, d), "bias": (d,),
                        "firing_probabilities": (n,)}.items():
        if name not in shapes:
            raise ValueError(f"source: {weights} has no {name!r} tensor "
                             f"(it has {sorted(shapes)})")
        if shapes[name][1] != shape:
            raise ValueError(f"source: {weights}: {name} has shape {shapes[name][1]}, but "
                             f"{CONFIG_FILENAME} (num_features={n}, hidden_dim={d}) gives "
                             f"{shape}")


def _load(path: Path, device: str):
    synthetic = _synthetic()
    try:
        return synthetic.SyntheticModel.load_from_disk(path, device=device)
    except (KeyError, TypeError, ValueError) as err:  # a config SAELens cannot rebuild
        raise ValueError(f"source: SAELens cannot load the synthetic model at {path}: "
                         f"{type(err).__name__}: {err}") from err


class _Kept(logging.Handler):
    def __init__(self, messages: list):
        super().__init__(logging.INFO)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname.lower()}: {record.getMessage()}")


@contextlib.contextmanager
def _quiet_build(messages: list):
    """Build a SAELens model without its terminal output: SAELens draws a progress bar
    while it orthogonalises (it asks for one, whoever calls it) and logs what its
    hierarchy compensation clamps. The bar is dropped; the log lines are kept in
    ``messages`` (the world's ``build_messages``), so what SAELens says about the world
    travels with it instead of interrupting a quiet run."""
    logger = logging.getLogger("sae_lens")
    handler, propagate = _Kept(messages), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _hierarchy_pairs(hierarchy) -> tuple:
    """``(parent, child)`` feature indices of a SAELens ``Hierarchy``, breadth-first. A
    node without a feature (an organising node) passes its parent on to its children,
    as SAELens's sampler does."""
    if hierarchy is None:
        return ()
    pairs, queue = [], deque((root, None) for root in hierarchy.roots)
    while queue:
        node, above = queue.popleft()
        here = above if node.feature_index is None else node.feature_index
        if node.feature_index is not None and above is not None:
            pairs.append((above, node.feature_index))
        queue.extend((child, here) for child in node.children)
    return tuple(pairs)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float32).numpy().copy()


class SAELensWorld(GroundTruthData):
    """A SAELens ``SyntheticModel`` as a toysae ground-truth world.

    source : a ``sae_lens.synthetic.SyntheticModel`` (used as it is); a
        ``SyntheticModelConfig`` (built here on ``device``, as ``SyntheticModel(config)``
        builds it: its orthogonalisation included); or the path of a directory
        ``SyntheticModel.save`` wrote (``synthetic_model_config.json``,
        ``synthetic_model.safetensors``, ``hierarchy.json``), checked before SAELens is
        asked to load it onto ``device``.
    seed : where the unseeded stream starts: ``sample(n)`` without a seed draws the
        ``k``-th call's samples with a seed derived from ``(seed, k)``.

    ``sample(n, seed=s)`` is SAELens's own sampling of the model under that seed,
    ``torch.manual_seed(s)`` then ``model.sample_with_features(n)`` (as
    ``sae_lens.util.temporary_seed(s)`` does), in one call: ``x = codes @ features +
    bias`` and the codes, on the CPU in float32; torch's global random state is left
    as it was. So ``torch.manual_seed(s)`` before ``eval_sae_on_synthetic_data(sae,
    world.model.feature_dict, world.model.activation_generator, num_samples=n)``
    scores on exactly ``world.sample(n, seed=s)``.
    """

    def __init__(self, source, *, seed: int = 0, device: str = "cpu"):
        self.seed = check_seed(seed)
        #: What SAELens logged while building the model (its hierarchy's clamped
        #: probabilities, say), one line each; empty for a model passed in built.
        self.build_messages: list[str] = []
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            _check_directory(path)
            with _quiet_build(self.build_messages):
                model = _load(path, device)
        else:
            synthetic = _synthetic()
            if isinstance(source, synthetic.SyntheticModelConfig):
                with _quiet_build(self.build_messages):
                    model = synthetic.SyntheticModel(source, device=device)
            elif isinstance(source, synthetic.SyntheticModel):
                model = source
            else:
                raise TypeError("source must be a SAELens SyntheticModel, a "
                                "SyntheticModelConfig or a directory path, got "
                                f"{type(source).__name__}")
        self.model = model
        self._calls = 0
        self._pairs = _hierarchy_pairs(model.hierarchy)

    # -- the ground truth -------------------------------------------------
    @property
    def d(self) -> int:
        return int(self.model.cfg.hidden_dim)

    @property
    def n_features(self) -> int:
        return int(self.model.cfg.num_features)

    @property
    def features(self) -> np.ndarray:
        """(n_features, d) float32, SAELens's ``feature_dict.feature_vectors`` (unit rows
        after its orthogonalisation)."""
        return _array(self.model.feature_dict.feature_vectors)

    @property
    def bias(self) -> np.ndarray:
        """(d,) float32, SAELens's ``feature_dict.bias`` (zeros for ``bias=False``)."""
        return _array(self.model.feature_dict.bias)

    @property
    def probabilities(self) -> np.ndarray:
        """(n_features,) each feature's own firing probability, after SAELens's
        hierarchy compensation (``activation_generator.firing_probabilities``)."""
        return _array(self.model.activation_generator.firing_probabilities)

    @property
    def hierarchy_pairs(self) -> tuple:
        """``(parent, child)`` pairs of SAELens's hierarchy, breadth-first; ``()`` without one."""
        return self._pairs

    def fingerprint(self) -> dict:
        """SAELens's config, its version and a BLAKE2b digest of every tensor that decides
        the samples (a saved model's features and probabilities need not follow from its
        config)."""
        import sae_lens

        gen = self.model.activation_generator
        digest = hashlib.blake2b(digest_size=16)
        tensors = [self.model.feature_dict.feature_vectors, self.model.feature_dict.bias,
                   gen.firing_probabilities, gen.mean_firing_magnitudes,
                   gen.std_firing_magnitudes]
        if self.model.correlation_matrix is not None:
            tensors += list(self.model.correlation_matrix)
        for t in tensors:
            digest.update(np.ascontiguousarray(_array(t)).tobytes())
        hierarchy = self.model.hierarchy
        digest.update(json.dumps(hierarchy.to_dict() if hierarchy else None).encode())
        return {"kind": "SAELensWorld", "sae_lens": sae_lens.__version__,
                "config": self.model.cfg.to_dict(), "blake2b": digest.hexdigest()}

    # -- sampling ---------------------------------------------------------
    def sample(self, n: int, seed: int | None = None) -> Batch:
        n = check_int(n, "n", minimum=1)
        if seed is None:
            seed = int(np.random.SeedSequence(self.seed, spawn_key=(self._calls,))
                       .generate_state(1, np.uint64)[0] >> np.uint64(1))
            self._calls += 1
        else:
            seed = check_seed(seed)
        with torch.random.fork_rng():  # as sae_lens.util.temporary_seed
            torch.manual_seed(seed)
            x, codes = self.model.sample_with_features(n)
        if codes.is_sparse:
            codes = codes.to_dense()
        # fresh tensors of this call: their memory is the arrays' (no copy of the
        # (n, n_features) codes, the largest thing a sample holds)
        return Batch(*(t.to(device="cpu", dtype=torch.float32).numpy() for t in (x, codes)))
