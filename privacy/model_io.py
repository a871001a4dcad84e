"""Trained models as safetensors, self-describing through their metadata.

The file holds only tensors plus string metadata: the model spec, the preprocessing
description, the input shape, the class count and (optionally) the run plan, each as a
JSON string. ``load_model`` rebuilds the module from that metadata through
``privacy.specs.build_model`` (the same allow-list as a quote) and loads the tensors
strictly. There is no pickle anywhere: ``torch.load`` is never used, so a model file
from anyone can be opened without running code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from privacy.errors import ModelFileError, PrivacyError
from privacy.preprocessing import vocabulary
from privacy.specs import DEFAULT_MAX_PARAMETERS, build_model, parse_model_spec, spec_to_dict

FORMAT = "privacy-model/1"


@dataclass(frozen=True)
class LoadedModel:
    """A rebuilt module (in eval mode) and the metadata it was saved with."""

    module: nn.Module
    spec: dict[str, Any]
    preprocessing: dict[str, Any]
    input_shape: tuple[int, ...]
    num_classes: int
    plan: dict[str, Any] | None
    extra: dict[str, Any]


def model_bytes(
    *,
    state_dict: Mapping[str, torch.Tensor],
    spec: Any,
    preprocessing: Mapping[str, Any],
    input_shape: tuple[int, ...] | list[int],
    num_classes: int,
    plan: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """Serialise weights and metadata to safetensors bytes (for storage or download).

    ``extra`` is free JSON for the market (run id, receipt summary); never put private
    statistics in it.
    """
    metadata = {
        "format": "pt",
        "privacy.format": FORMAT,
        "privacy.spec": json.dumps(spec_to_dict(parse_model_spec(spec))),
        "privacy.preprocessing": json.dumps(dict(preprocessing)),
        "privacy.input_shape": json.dumps([int(s) for s in input_shape]),
        "privacy.num_classes": str(int(num_classes)),
        "privacy.plan": json.dumps(dict(plan) if plan is not None else None),
        "privacy.extra": json.dumps(dict(extra or {})),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    return st_save(tensors, metadata=metadata)


def save_model(path: str | Path, **kwargs: Any) -> Path:
    """Write ``model_bytes(**kwargs)`` to ``path`` (see ``model_bytes`` for arguments)."""
    target = Path(path)
    target.write_bytes(model_bytes(**kwargs))
    return target


def _read_metadata(blob: bytes) -> dict[str, str]:
    # safetensors layout: 8-byte little-endian header length, then a JSON header.
    if len(blob) < 8:
        raise ModelFileError("not a safetensors file", details={})
    n = int.from_bytes(blob[:8], "little")
    if n <= 0 or 8 + n > len(blob):
        raise ModelFileError("not a safetensors file", details={})
    try:
        header = json.loads(blob[8 : 8 + n])
    except ValueError:
        raise ModelFileError("safetensors header is not JSON", details={}) from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("privacy.format") != FORMAT:
        raise ModelFileError("the file carries no privacy model metadata", details={})
    return meta


def load_model(
    source: str | Path | bytes, *, max_parameters: int = DEFAULT_MAX_PARAMETERS
) -> LoadedModel:
    """Rebuild the module from the file's metadata alone and load its weights.

    Raises:
        ModelFileError: not our format, bad metadata, or weights that do not fit the spec.
    """
    blob = source if isinstance(source, bytes) else Path(source).read_bytes()
    meta = _read_metadata(blob)
    try:
        spec = json.loads(meta["privacy.spec"])
        preprocessing = json.loads(meta["privacy.preprocessing"])
        shape = tuple(int(s) for s in json.loads(meta["privacy.input_shape"]))
        classes = int(meta["privacy.num_classes"])
        plan = json.loads(meta.get("privacy.plan", "null"))
        extra = json.loads(meta.get("privacy.extra", "{}"))
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(f"model metadata is malformed: {type(exc).__name__}") from None
    try:
        module = build_model(
            spec,
            input_shape=shape,
            num_classes=classes,
            max_parameters=max_parameters,
            vocabulary=vocabulary(preprocessing),
        )
    except PrivacyError as exc:
        raise ModelFileError(f"the stored spec cannot be rebuilt: {exc}") from None
    try:
        tensors = st_load(blob)
        module.load_state_dict(tensors, strict=True)
    except (SafetensorError, RuntimeError) as exc:
        raise ModelFileError(f"weights do not match the spec: {type(exc).__name__}") from None
    module.eval()
    return LoadedModel(module, spec, preprocessing, shape, classes, plan, extra)
