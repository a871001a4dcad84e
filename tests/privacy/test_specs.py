"""Model specs: the allow-list, shape inference, bounds, templates and precise errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from privacy.errors import PrivacyError, SpecError
from privacy.specs import (
    DEFAULT_MAX_PARAMETERS,
    build_model,
    count_parameters,
    expand_template,
    parse_model_spec,
    seed_mlp_parameters,
    spec_to_dict,
    template_defaults,
)


def _layers(*layers):
    return {"layers": list(layers)}


def test_seed_model_builds(seed_model_spec):
    model = build_model(seed_model_spec, input_shape=(1, 28, 28), num_classes=10)
    assert [type(m) for m in model] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) == 784 * 128 + 128 + 128 * 10 + 10
    assert seed_mlp_parameters() == 784 * 128 + 128 + 128 * 10 + 10


def test_the_seed_mlp_is_the_quotes_reference_workload():
    from market.trading.services import reference_work_per_sample

    assert reference_work_per_sample() == float(seed_mlp_parameters()) == 101_770.0


@pytest.mark.parametrize(
    ("template", "shape", "classes"),
    [
        ({"template": "logistic_regression"}, (30,), 2),
        ({"template": "mlp"}, (64,), 10),
        ({"template": "mlp", "hidden": [64, 32], "dropout": 0.1, "activation": "relu"}, (5,), 3),
        ({"template": "cnn"}, (1, 28, 28), 10),
        ({"template": "cnn"}, (1, 8, 8), 10),
        ({"template": "cnn", "channels": [8], "dense": 16}, (3, 32, 32), 4),
    ],
)
def test_templates_build_and_run(template, shape, classes):
    model = build_model(template, input_shape=shape, num_classes=classes)
    assert model(torch.zeros(2, *shape)).shape == (2, classes)
    assert count_parameters(template, input_shape=shape, num_classes=classes) == sum(
        p.numel() for p in model.parameters()
    )


def test_cnn_template_is_tramer_boneh_on_mnist():
    layers = expand_template(
        parse_model_spec({"template": "cnn"}), input_shape=(1, 28, 28), num_classes=10
    ).layers
    assert [layer.type for layer in layers] == [
        "conv2d", "tanh", "maxpool2d", "conv2d", "tanh", "maxpool2d",
        "flatten", "linear", "tanh", "linear",
    ]  # fmt: skip
    assert (layers[0].out_channels, layers[0].kernel_size, layers[0].stride) == (16, 8, 2)
    assert (layers[3].out_channels, layers[3].kernel_size, layers[3].stride) == (32, 4, 2)


def test_template_defaults_carry_tuned_learning_rates():
    for spec in ({"template": "logistic_regression"}, {"template": "mlp"}):
        defaults = template_defaults(parse_model_spec(spec))
        # docs/pitfalls.md: 1e-3 stalls DP models on tabular data.
        assert defaults["learning_rate"] >= 1e-2
    assert set(template_defaults(parse_model_spec({"template": "cnn"}))) >= {
        "learning_rate",
        "optimizer",
        "max_grad_norm",
        "batch_size",
        "epochs",
    }


def test_every_allowed_layer_type_builds():
    spec = _layers(
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "groupnorm", "num_groups": 2},
        {"type": "gelu"},
        {"type": "avgpool2d", "kernel_size": 2},
        {"type": "maxpool2d", "kernel_size": 2, "stride": 1},
        {"type": "flatten"},
        {"type": "layernorm"},
        {"type": "dropout", "p": 0.5},
        {"type": "linear", "out_features": 8},
        {"type": "tanh"},
        {"type": "relu"},
        {"type": "linear", "out_features": 3, "bias": False},
    )
    model = build_model(spec, input_shape=(1, 8, 8), num_classes=3)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


def test_embedding_as_first_layer():
    spec = _layers(
        {"type": "embedding", "num_embeddings": 20, "embedding_dim": 4},
        {"type": "flatten"},
        {"type": "linear", "out_features": 2},
    )
    model = build_model(spec, input_shape=(5,), num_classes=2, vocabulary=20)
    assert model(torch.tensor([[1.0, 2, 3, 4, 5]])).shape == (1, 2)


EMBEDDING = _layers(
    {"type": "embedding", "num_embeddings": 6, "embedding_dim": 2},
    {"type": "flatten"},
    {"type": "linear", "out_features": 2},
)


def test_embedding_is_refused_on_scaled_input():
    # Scaled floats are not indices: a value at a column's maximum would become an index
    # past the table and fail the run on that row alone.
    with pytest.raises(SpecError) as info:
        build_model(EMBEDDING, input_shape=(3,), num_classes=2)
    assert info.value.details == {"layer": 0, "field": "type"}


def test_embedding_smaller_than_the_vocabulary_is_refused_when_the_spec_is_checked():
    with pytest.raises(SpecError) as info:
        build_model(EMBEDDING, input_shape=(3,), num_classes=2, vocabulary=7)
    assert info.value.details["field"] == "num_embeddings"
    assert info.value.details["vocabulary"] == 7


def test_embedding_indices_cannot_leave_the_table():
    model = build_model(EMBEDDING, input_shape=(3,), num_classes=2, vocabulary=6)
    out = model(torch.tensor([[5.0, 6.0, -1.0], [float("nan"), 1e30, 0.0]]))
    assert torch.isfinite(out).all()


def test_a_non_finite_row_is_zeroed_without_touching_the_others():
    spec = _layers({"type": "linear", "out_features": 2})
    model = build_model(spec, input_shape=(2,), num_classes=2)
    with torch.no_grad():
        model[0].weight.fill_(3e38)  # 3e38 + 3e38 overflows float32
    x = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    out = model(x)
    assert torch.equal(out[0], torch.zeros(2))  # overflowed to inf: zeroed
    assert torch.equal(out[1], model[0].bias.detach())  # untouched


def test_spec_round_trips_as_json(seed_model_spec):
    spec = parse_model_spec(seed_model_spec)
    assert parse_model_spec(spec_to_dict(spec)) == spec


REJECTED = [
    # (spec, input shape, classes, layer index, field)
    ({}, (4,), 2, None, "model"),
    ({"template": "resnet"}, (4,), 2, None, "model"),
    ({"layers": []}, (4,), 2, None, "layers"),
    ("flatten", (4,), 2, None, "model"),
    (_layers({"type": "lambda"}), (4,), 2, 0, "type"),
    (_layers({"type": "linear"}), (4,), 2, 0, "out_features"),
    (_layers({"type": "linear", "out_features": 0}), (4,), 2, 0, "out_features"),
    (_layers({"type": "linear", "out_features": 10**6}), (4,), 2, 0, "out_features"),
    (_layers({"type": "linear", "out_features": "2"}), (4,), 2, 0, "out_features"),
    (_layers({"type": "linear", "out_features": 2, "init": "os.system"}), (4,), 2, 0, "init"),
    (_layers({"type": "flatten"}, {"type": "dropout", "p": 1.0}), (4,), 2, 1, "p"),
    (_layers({"type": "conv2d", "out_channels": 4, "kernel_size": 99}), (1, 8, 8), 2, 0,
     "kernel_size"),
    (_layers({"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 9}), (1, 8, 8), 2,
     0, "stride"),
    (_layers({"type": "maxpool2d", "kernel_size": 0}), (1, 8, 8), 2, 0, "kernel_size"),
    (_layers({"type": "groupnorm", "num_groups": 0}), (1, 8, 8), 2, 0, "num_groups"),
    (_layers({"type": "embedding", "num_embeddings": 10**9, "embedding_dim": 2}), (4,), 2, 0,
     "num_embeddings"),
    ({"template": "mlp", "hidden": []}, (4,), 2, None, "hidden"),
    ({"template": "mlp", "hidden": [0]}, (4,), 2, None, "hidden.0"),
    ({"template": "mlp", "dropout": 0.95}, (4,), 2, None, "dropout"),
    ({"template": "mlp", "activation": "sigmoid"}, (4,), 2, None, "activation"),
    ({"template": "cnn", "channels": [8, 8, 8, 8, 8]}, (1, 28, 28), 2, None, "channels"),
    ({"template": "logistic_regression", "hidden": [3]}, (4,), 2, None, "hidden"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "shape", "classes", "layer", "field"), REJECTED)
def test_rejected_by_validation(spec, shape, classes, layer, field):
    with pytest.raises(SpecError) as info:
        build_model(spec, input_shape=shape, num_classes=classes)
    assert info.value.details["layer"] == layer
    assert info.value.details["field"] == field
    assert isinstance(info.value, PrivacyError)


SHAPE_REJECTED = [
    (_layers({"type": "linear", "out_features": 2}), (1, 4, 4), 2, 0, "type"),
    (_layers({"type": "flatten"}, {"type": "conv2d", "out_channels": 2, "kernel_size": 1}),
     (1, 4, 4), 2, 1, "type"),
    (_layers({"type": "conv2d", "out_channels": 2, "kernel_size": 9}), (1, 4, 4), 2, 0,
     "kernel_size"),
    (_layers({"type": "maxpool2d", "kernel_size": 8}), (1, 4, 4), 2, 0, "kernel_size"),
    (_layers({"type": "flatten"}, {"type": "maxpool2d", "kernel_size": 2}), (1, 4, 4), 2, 1,
     "type"),
    (_layers({"type": "conv2d", "out_channels": 3, "kernel_size": 1},
             {"type": "groupnorm", "num_groups": 2}), (1, 4, 4), 2, 1, "num_groups"),
    (_layers({"type": "flatten"}, {"type": "groupnorm", "num_groups": 1}), (1, 4, 4), 2, 1,
     "type"),
    (_layers({"type": "flatten"}, {"type": "embedding", "num_embeddings": 3,
                                   "embedding_dim": 2}), (4,), 2, 1, "type"),
    (_layers({"type": "flatten"}, {"type": "linear", "out_features": 3}), (4,), 2, 1,
     "out_features"),
    (_layers({"type": "flatten"}, {"type": "relu"}), (2,), 2, None, "layers"),
    ({"template": "cnn"}, (16,), 2, None, "template"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "shape", "classes", "layer", "field"), SHAPE_REJECTED)
def test_rejected_by_shape_inference(spec, shape, classes, layer, field):
    with pytest.raises(SpecError) as info:
        build_model(spec, input_shape=shape, num_classes=classes)
    assert info.value.details["layer"] == layer
    assert info.value.details["field"] == field


def test_parameter_cap_is_checked_before_allocation():
    spec = {"template": "mlp", "hidden": [4096, 4096, 4096, 4096]}
    with pytest.raises(SpecError) as info:
        build_model(spec, input_shape=(4096,), num_classes=10)
    assert info.value.details["parameters"] > DEFAULT_MAX_PARAMETERS
    with pytest.raises(SpecError):
        build_model({"template": "mlp"}, input_shape=(64,), num_classes=10, max_parameters=100)


@pytest.mark.parametrize(("shape", "classes"), [((), 2), ((0,), 2), ((4,), 1)])
def test_bad_dataset_shape(shape, classes):
    with pytest.raises(SpecError):
        build_model({"template": "mlp"}, input_shape=shape, num_classes=classes)


def test_too_many_layers():
    spec = _layers({"type": "flatten"}, *[{"type": "relu"}] * 40)
    with pytest.raises(SpecError) as info:
        build_model(spec, input_shape=(4,), num_classes=4)
    assert info.value.details["field"] == "layers"


def test_activation_cap_names_the_layer():
    spec = _layers(
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "conv2d", "out_channels": 512, "kernel_size": 1},
        {"type": "flatten"},
        {"type": "linear", "out_features": 2},
    )
    with pytest.raises(SpecError) as info:
        build_model(spec, input_shape=(1, 64, 64), num_classes=2, max_parameters=10**9)
    assert info.value.details["layer"] == 1
