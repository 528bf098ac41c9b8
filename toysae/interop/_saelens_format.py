"""SAELens's directory format itself: file names, architecture names, and the checks
of ``cfg.json`` and the weight file's header that come before anything is read or built
(docs/interop.md)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
#: The SAELens release whose format is written (and that the tests load it with).
SAELENS_VERSION = "6.54.12"

#: SAELens inference architectures whose directories this format reads and writes (their
#: tensors: expected_shapes). Which toysae architecture each holds, its class declares.
SAELENS_ARCHITECTURES = ("standard", "topk", "jumprelu", "gated", "matching_pursuit")
#: SAELens architectures toysae has no counterpart for (named in the error).
OTHER_SAELENS = ("abstopk", "transcoder", "skip_transcoder", "jumprelu_transcoder",
                 "jumprelu_skip_transcoder", "temporal")
#: SAELens's training architectures with no inference class: it saves them as JumpReLU SAEs.
SAELENS_TRAINING_ONLY = ("batchtopk", "matryoshka_batchtopk")
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16}


@dataclass
class SAELensConfig:
    """The fields of a validated ``cfg.json`` that decide the forward pass."""

    architecture: str
    d_in: int
    d_sae: int
    dtype: torch.dtype
    apply_b_dec_to_input: bool
    k: int | None
    rescale_acts_by_decoder_norm: bool
    reshape: str
    metadata: dict
    training_architecture: str | None
    details: dict
    toysae: dict | None
    notes: list[str] = field(default_factory=list)
    #: The architecture's own fields, checked (what its class's ``saelens_cfg`` writes):
    #: TopK's ``k`` and ranking switch, matching pursuit's stopping rules; else empty.
    own: dict = field(default_factory=dict)



def read_cfg(directory: Path) -> SAELensConfig:
    path = directory / CFG_FILENAME
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(raw).__name__}")
    metadata = raw.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: metadata must be an object, got {metadata!r}")
    version = metadata.get("sae_lens_version", raw.get("sae_lens_version"))
    if not _is_6x_or_later(version):
        raise ValueError(f"{path} was written by SAELens {version or '< 6 (no version)'}; "
                         f"toysae reads the SAELens 6 format: load the SAE with SAELens >= 6 "
                         f"(SAE.load_from_disk) and save it again (save_model)")
    arch = raw.get("architecture")
    if arch in SAELENS_TRAINING_ONLY:
        raise ValueError(f"{path}: a SAELens {arch} training SAE (its activation needs a whole "
                         f"batch); save it with SAELens's save_inference_model, which writes "
                         f"the JumpReLU SAE it becomes at inference, and load that")
    if arch in OTHER_SAELENS:
        raise ValueError(f"{path}: SAELens architecture {arch!r} has no toysae counterpart; "
                         f"toysae reads {sorted(SAELENS_ARCHITECTURES)}")
    if arch not in SAELENS_ARCHITECTURES:
        raise ValueError(f"{path}: architecture {arch!r} is not a SAELens SAE architecture "
                         f"toysae knows; it reads {sorted(SAELENS_ARCHITECTURES)}")
    d_in = _cfg_int(raw, "d_in", path, minimum=1)
    d_sae = _cfg_int(raw, "d_sae", path, minimum=1)
    dtype_name = str(raw.get("dtype", "float32")).removeprefix("torch.")
    if dtype_name not in DTYPES:
        raise ValueError(f"{path}: dtype {raw.get('dtype')!r} is not one of {sorted(DTYPES)}")
    notes = []
    if dtype_name != "float32":
        notes.append(f"SAELens computes in {dtype_name}; toysae in float32 (the weights were "
                     f"rounded to {dtype_name} as SAELens loads them, then converted)")
    normalize = raw.get("normalize_activations", "none")
    if normalize != "none":
        raise ValueError(f"{path}: normalize_activations is {normalize!r}; toysae SAEs take "
                         f"raw activations. Fold the normalisation into the weights with "
                         f"SAELens (fold_activation_norm_scaling_factor or "
                         f"fold_activation_whitening) and save it again")
    reshape = raw.get("reshape_activations", "none")
    if reshape not in ("none", "hook_z"):
        raise ValueError(f"{path}: reshape_activations {reshape!r} is not 'none' or 'hook_z'")
    if reshape == "hook_z":
        notes.append("a hook_z SAE: toysae takes its input flattened to "
                     "(n, n_heads * d_head), which is what SAELens encodes")
    apply_b_dec = _cfg_bool(raw, "apply_b_dec_to_input", path, default=True)
    k, rescale, own = None, False, {}
    if arch == "topk":
        k = _cfg_int(raw, "k", path, minimum=1, maximum=d_sae, default=100)
        rescale = _cfg_bool(raw, "rescale_acts_by_decoder_norm", path, default=False)
        own = {"k": k, "rescale_acts_by_decoder_norm": rescale}
    if arch == "matching_pursuit":
        own = _pursuit_fields(raw, path)
    training = metadata.get("training_architecture")
    details = metadata.get("training_architecture_details") or {}
    if not isinstance(details, dict):
        raise ValueError(f"{path}: metadata.training_architecture_details must be an object")
    toysae_entry = metadata.get("toysae")
    if toysae_entry is not None and not isinstance(toysae_entry, dict):
        raise ValueError(f"{path}: metadata.toysae must be an object, got {toysae_entry!r}")
    return SAELensConfig(arch, d_in, d_sae, DTYPES[dtype_name], apply_b_dec, k, rescale,
                          reshape, metadata, training if isinstance(training, str) else None,
                          details, toysae_entry, notes, own)


def _pursuit_fields(raw: dict, path: Path) -> dict:
    """SAELens's matching-pursuit stopping rules, with its defaults (residual_threshold
    0.01, max_iterations None meaning d_in steps, stop_on_duplicate_support true)."""
    threshold = raw.get("residual_threshold", 1e-2)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not math.isfinite(threshold):
        raise ValueError(f"{path}: residual_threshold must be a finite number, got "
                         f"{threshold!r}")
    steps = raw.get("max_iterations")
    return {"residual_threshold": float(threshold),
            "max_iterations": None if steps is None else _cfg_int(raw, "max_iterations",
                                                                  path, minimum=1),
            "stop_on_duplicate_support": _cfg_bool(raw, "stop_on_duplicate_support", path,
                                                   default=True)}


def _is_6x_or_later(version) -> bool:
    if not isinstance(version, str):
        return False
    head = version.split(".", 1)[0]
    return head.isdigit() and int(head) >= 6


def _cfg_int(raw: dict, key: str, path: Path, *, minimum: int, maximum: int | None = None,
             default=None) -> int:
    value = raw.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{path}: {key} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{path}: {key} must be {bound}, got {value}")
    return value


def _cfg_bool(raw: dict, key: str, path: Path, *, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{path}: {key} must be true or false, got {value!r}")
    return value


def expected_shapes(cfg: SAELensConfig, keys) -> dict[str, tuple[int, ...]]:
    d, w = cfg.d_in, cfg.d_sae
    if cfg.architecture == "matching_pursuit":  # its encoder is the decoder
        return {"W_dec": (w, d), "b_dec": (d,)}
    shapes = {"W_enc": (d, w), "W_dec": (w, d), "b_dec": (d,)}
    if cfg.architecture == "gated":
        shapes.update(b_gate=(w,), b_mag=(w,), r_mag=(w,))
    else:
        shapes["b_enc"] = (w,)
    if cfg.architecture == "jumprelu":
        # SAELens reads a log_threshold of older checkpoints as exp(log_threshold).
        shapes["log_threshold" if "log_threshold" in keys else "threshold"] = (w,)
    return shapes


def check_tensor_header(directory: Path, cfg: SAELensConfig) -> None:
    """Tensor names, shapes and dtypes from the file's header, before any data is read."""
    from safetensors import SafetensorError, safe_open

    path = directory / WEIGHTS_FILENAME
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype())
                     for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    expected = expected_shapes(cfg, found)
    if set(found) != set(expected):
        raise ValueError(f"{path}: a {cfg.architecture} SAE has tensors {sorted(expected)}, "
                         f"the file has {sorted(found)}")
    for key, shape in expected.items():
        got, dtype = found[key]
        if got != shape:
            raise ValueError(f"{path}: {key} has shape {got}, but cfg.json (d_in={cfg.d_in}, "
                             f"d_sae={cfg.d_sae}) gives {shape}")
        if dtype not in ("F32", "F64", "F16", "BF16"):
            raise ValueError(f"{path}: {key} has dtype {dtype}; expected a float tensor")
