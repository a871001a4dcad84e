"""Model files: safetensors with the spec and preprocessing in metadata, rebuilt without pickle."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save as st_save

from privacy.errors import ModelFileError
from privacy.model_io import load_model, model_bytes, save_model
from privacy.preprocessing import describe
from privacy.specs import build_model

PRE = describe(
    {"format": "npz", "shape": [8, 8], "pixel_range": {"min": 0, "max": 16},
     "class_names": [str(i) for i in range(10)]}
)  # fmt: skip


def _saved(spec, tmp_path, **extra):
    model = build_model(spec, input_shape=(1, 8, 8), num_classes=10)
    path = save_model(
        tmp_path / "model.safetensors",
        state_dict=model.state_dict(),
        spec=spec,
        preprocessing=PRE,
        input_shape=(1, 8, 8),
        num_classes=10,
        **extra,
    )
    return model, path


def test_round_trip_rebuilds_from_metadata_alone(tmp_path, seed_model_spec):
    model, path = _saved(seed_model_spec, tmp_path, plan={"epsilon": 1.0}, extra={"run": "r1"})
    loaded = load_model(path)
    x = torch.rand(4, 1, 8, 8)
    model.eval()
    assert torch.equal(loaded.module(x), model(x))
    assert loaded.preprocessing == PRE
    assert loaded.input_shape == (1, 8, 8) and loaded.num_classes == 10
    assert loaded.plan == {"epsilon": 1.0} and loaded.extra == {"run": "r1"}
    assert loaded.spec["layers"][1] == {"type": "linear", "out_features": 128, "bias": True}


def test_templates_round_trip(tmp_path):
    model, path = _saved({"template": "cnn", "channels": [4], "dense": 8}, tmp_path)
    loaded = load_model(path.read_bytes())
    assert loaded.spec == {"template": "cnn", "channels": [4], "dense": 8}
    assert sum(p.numel() for p in loaded.module.parameters()) == sum(
        p.numel() for p in model.parameters()
    )


def test_plain_safetensors_without_our_metadata_is_refused(tmp_path):
    blob = st_save({"w": torch.zeros(2)})
    with pytest.raises(ModelFileError):
        load_model(blob)


def test_pickle_is_never_unpickled():
    blob = pickle.dumps({"w": torch.zeros(2)})
    with pytest.raises(ModelFileError):
        load_model(blob)
    with pytest.raises(ModelFileError):
        load_model(b"\x00")


def test_weights_must_match_the_spec(seed_model_spec):
    blob = model_bytes(
        state_dict={"1.weight": torch.zeros(3, 3)},
        spec=seed_model_spec,
        preprocessing=PRE,
        input_shape=(1, 8, 8),
        num_classes=10,
    )
    with pytest.raises(ModelFileError):
        load_model(blob)


def test_tampered_spec_is_validated_like_a_quote(seed_model_spec):
    model = build_model(seed_model_spec, input_shape=(1, 8, 8), num_classes=10)
    blob = model_bytes(state_dict=model.state_dict(), spec=seed_model_spec, preprocessing=PRE,
                       input_shape=(1, 8, 8), num_classes=10)  # fmt: skip
    evil = json.dumps({"layers": [{"type": "__import__('os').system('x')"}]})
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    header["__metadata__"]["privacy.spec"] = evil
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    tampered = len(new_header).to_bytes(8, "little") + new_header + blob[8 + n :]
    with pytest.raises(ModelFileError):
        load_model(tampered)
    with pytest.raises(ModelFileError):
        load_model(tampered, max_parameters=10)


def test_parameter_cap_applies_on_load(tmp_path, seed_model_spec):
    _, path = _saved(seed_model_spec, tmp_path)
    with pytest.raises(ModelFileError):
        load_model(path, max_parameters=1000)
