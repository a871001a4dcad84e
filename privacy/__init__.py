"""Privacy library: encrypted storage, DP training and privacy accounting.

The training names are loaded lazily (PEP 562): importing ``privacy`` for the vault does
not import torch and Opacus, which take seconds and hundreds of MB in a web process.

A run, end to end (every privacy parameter is keyword-only)::

    description = describe_preprocessing(listing_metadata)      # public metadata only
    shape, classes = preprocessing.input_shape(description), preprocessing.num_classes(description)
    model = build_model(spec, input_shape=shape, num_classes=classes, max_parameters=cap)
    plan = plan_run(rows=n, epsilon=1.0, delta=1e-6, epochs=5, batch_size=256,
                    max_grad_norm=1.0)                            # raises PlanError
    ledger = PrivacyLedger(stored_records)                       # the dataset's releases
    ledger.require_fit(plan.records(), cap_epsilon=10.0, delta=1e-6)  # BudgetExceeded
    data = encode(description, table)                            # SchemaViolation
    result = train_private(model=model, features=data.features, labels=data.labels,
                           plan=plan, learning_rate=0.01, progress=report)
    ledger.extend(result.records)                                # what was released
    blob = model_bytes(state_dict=result.state_dict, spec=spec, preprocessing=description,
                       input_shape=shape, num_classes=classes, plan=plan.to_dict())
"""

from typing import TYPE_CHECKING
from typing import Any as _Any

if TYPE_CHECKING:  # static names for mypy and IDEs; at runtime see __getattr__
    from privacy.accounting import PrivacyLedger, compose_epsilon
    from privacy.model_io import load_model, model_bytes, save_model
    from privacy.preprocessing import describe as describe_preprocessing
    from privacy.preprocessing import encode, encode_features, validate_rows
    from privacy.release import gaussian_release, laplace_release
    from privacy.specs import (
        DEFAULT_MAX_PARAMETERS,
        ModelSpec,
        build_model,
        parse_model_spec,
        template_defaults,
    )
    from privacy.training import RunPlan, TrainingResult, plan_run, train_private

__all__ = [
    "DEFAULT_MAX_PARAMETERS",
    "ModelSpec",
    "PrivacyLedger",
    "RunPlan",
    "TrainingResult",
    "build_model",
    "compose_epsilon",
    "describe_preprocessing",
    "encode",
    "encode_features",
    "gaussian_release",
    "laplace_release",
    "load_model",
    "model_bytes",
    "parse_model_spec",
    "plan_run",
    "save_model",
    "template_defaults",
    "train_private",
    "validate_rows",
]

_LAZY = {
    "build_model": "privacy.specs",
    "parse_model_spec": "privacy.specs",
    "template_defaults": "privacy.specs",
    "ModelSpec": "privacy.specs",
    "DEFAULT_MAX_PARAMETERS": "privacy.specs",
    "plan_run": "privacy.training",
    "train_private": "privacy.training",
    "RunPlan": "privacy.training",
    "TrainingResult": "privacy.training",
    "PrivacyLedger": "privacy.accounting",
    "compose_epsilon": "privacy.accounting",
    "gaussian_release": "privacy.release",
    "laplace_release": "privacy.release",
    "describe_preprocessing": "privacy.preprocessing",
    "encode": "privacy.preprocessing",
    "encode_features": "privacy.preprocessing",
    "validate_rows": "privacy.preprocessing",
    "save_model": "privacy.model_io",
    "load_model": "privacy.model_io",
    "model_bytes": "privacy.model_io",
}
_RENAMED = {"describe_preprocessing": "describe"}


def __getattr__(name: str) -> _Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'privacy' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), _RENAMED.get(name, name))
    globals()[name] = value
    return value


# --- privacy.vault: envelope encryption (light: cryptography only, but kept lazy like the rest)
if TYPE_CHECKING:
    from privacy.vault import Keyring as Keyring
    from privacy.vault import Vault as Vault
    from privacy.vault import WrappedKey as WrappedKey
    from privacy.vault import init_keydir as init_keydir
    from privacy.vault import retire as retire
    from privacy.vault import rotate as rotate

_VAULT_NAMES = ("Keyring", "Vault", "WrappedKey", "init_keydir", "retire", "rotate")
_LAZY.update(dict.fromkeys(_VAULT_NAMES, "privacy.vault"))
__all__ += list(_VAULT_NAMES)
