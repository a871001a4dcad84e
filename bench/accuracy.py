"""Test accuracy vs epsilon of runs bought through the product's API, beside published anchors.

Every private figure is a real purchase on a throw-away instance: the owner lists the data
(API: draft, encrypted upload), the researcher quotes, buys, and the worker's ``execute_run``
trains in this process; the delivered model file is downloaded through the API, rebuilt with
``privacy.model_io.load_model`` and scored on the held-out *test* split (never seen by the
run) after ``privacy.preprocessing.encode_features`` with the owner's public schema. The run
itself trains on 80% of the listed rows (the product holds out 20% for its noisy metrics).
Next to each private model, the same model and encoding trained without privacy (plain
PyTorch, Adam, same batch size and epochs, all listed rows, one torch thread; the case's
learning rate when its recipe is Adam, else 1e-3 for images and 1e-2 for tables).

Each purchase asks for what the quote form offers for that kind of data at that epsilon
(``privacy.specs.template_defaults``: the measured recipe of ``RECIPES``, else the
template's defaults); ``--mlp-epochs``, ``--cnn-epochs`` and ``--adult-epochs`` override
only the epochs. ``--cases`` picks the purchases (``CASES``):

- ``mnist-seed-mlp``, ``mnist-mlp``, ``mnist-cnn``: MNIST (``mnist.npz``; ``--mnist-rows``
  of the 60,000 training images listed, 10,000 test images scored) at ``--image-epsilons``
  (1.2 and 3), delta 1e-5: the founding model (``privacy.specs.SEED_MLP``: flatten, dense
  128 ReLU, dropout 0.2, dense 10) sent as a layer list, the ``mlp`` template (tanh, 256
  hidden) and the ``cnn`` template (Tramer & Boneh's tanh CNN).
- ``adult-lr``, ``adult-mlp``: UCI Adult (``adult.data`` listed, ``adult.test`` scored) at
  ``--tabular-epsilons`` (0.5, 1, 3), delta 1e-5: logistic regression and an MLP.
  Categorical columns are one-hot over the category sets of the UCI documentation
  (``adult.names``, ``?`` kept as its own category); numeric bounds are declared from public
  definitions, not from the data (see ``ADULT_NUMERIC``). By default age and hours per week
  are declared categories over every whole number of their public bounds
  (``--adult-categorical``; an income curve that rises and falls with age is not one weight
  on a scaled age) and capital gain and loss binned over round-number edges
  (``ADULT_BINS``, ``--adult-bins``; a gain past a few thousand is a threshold): logistic
  regression then clears the 85% anchor at epsilon 0.5. ``--adult-categorical ''
  --adult-bins ''`` lists them as numbers, capital on a log scale (``ADULT_LOG``,
  ``--adult-log none`` for linear). ``fnlwgt`` (a census sampling weight, not an attribute
  of the person) is not listed.

Platform overhead (figure 4) comes from the same runs: purchase-to-delivery wall time (buy,
worker claims, decrypts, trains, writes the model and receipts, model downloaded) minus the
training loop's own time from the run's cost receipt, as a fraction of the wall time.

Recipe sweeps (``--sweep adult|mnist-mlp|mnist-cnn``): the recipes of
``privacy.specs.RECIPES`` come from these grids (learning rate x expected batch x optimizer
x learning-rate schedule x clipping norm x epochs at each epsilon, lists given by the
``--sweep-*`` options, the product's plan with its 20% held out) over the same listing and
encoding as the purchases, trained with ``privacy.train_private`` directly (not through the
API: the purchase path adds nothing to the model) and scored on the test split; each cell
is the mean of ``--sweep-repeats`` runs (noise and sampling come from OS entropy, so runs
differ). One torch thread; an MNIST MLP epoch takes about 1 s, a CNN epoch about 20 s on
one core.

Without ``--data`` files it falls back to scikit-learn's digits (for MNIST) and breast
cancer (for Adult), said so in the output; anchors then do not apply.
Run ``python bench/accuracy.py [--data DIR] [--smoke] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import platform
import sys
import time
import warnings
from collections.abc import Mapping
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir, make_instance, write_json  # noqa: E402

DELTA = 1e-5

#: Published anchors: (source, epsilon, accuracy). Delta 1e-5 throughout.
ANCHORS: dict[str, list[tuple[str, float | None, float]]] = {
    "mnist": [
        ("Abadi et al. 2016 (PCA + MLP)", 0.5, 0.90),
        ("Abadi et al. 2016 (PCA + MLP)", 2.0, 0.95),
        ("Abadi et al. 2016 (PCA + MLP)", 8.0, 0.97),
        ("Opacus MNIST example (CNN)", 1.16, 0.9463),
        ("Opacus MNIST example (CNN)", 2.91, 0.9678),
        ("Tramer & Boneh 2021 (tanh CNN, end to end)", 3.0, 0.981),
    ],
    "adult": [("non-private logistic regression, one-hot (common figure)", None, 0.85)],
}

ADULT_CATEGORIES: dict[str, list[str]] = {
    # From the UCI documentation (adult.names); "?" marks a missing value there.
    "workclass": ["Private", "Self-emp-not-inc", "Self-emp-inc", "Federal-gov", "Local-gov",
                  "State-gov", "Without-pay", "Never-worked", "?"],
    "education": ["Bachelors", "Some-college", "11th", "HS-grad", "Prof-school", "Assoc-acdm",
                  "Assoc-voc", "9th", "7th-8th", "12th", "Masters", "1st-4th", "10th",
                  "Doctorate", "5th-6th", "Preschool"],
    "marital-status": ["Married-civ-spouse", "Divorced", "Never-married", "Separated",
                       "Widowed", "Married-spouse-absent", "Married-AF-spouse"],
    "occupation": ["Tech-support", "Craft-repair", "Other-service", "Sales", "Exec-managerial",
                   "Prof-specialty", "Handlers-cleaners", "Machine-op-inspct", "Adm-clerical",
                   "Farming-fishing", "Transport-moving", "Priv-house-serv", "Protective-serv",
                   "Armed-Forces", "?"],
    "relationship": ["Wife", "Own-child", "Husband", "Not-in-family", "Other-relative",
                     "Unmarried"],
    "race": ["White", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other", "Black"],
    "sex": ["Female", "Male"],
    "native-country": ["United-States", "Cambodia", "England", "Puerto-Rico", "Canada",
                       "Germany", "Outlying-US(Guam-USVI-etc)", "India", "Japan", "Greece",
                       "South", "China", "Cuba", "Iran", "Honduras", "Philippines", "Italy",
                       "Poland", "Jamaica", "Vietnam", "Mexico", "Portugal", "Ireland", "France",
                       "Dominican-Republic", "Laos", "Ecuador", "Taiwan", "Haiti", "Columbia",
                       "Hungary", "Guatemala", "Nicaragua", "Scotland", "Thailand", "Yugoslavia",
                       "El-Salvador", "Trinadad&Tobago", "Peru", "Hong", "Holand-Netherlands",
                       "?"],
}  # fmt: skip

#: Public bounds, from definitions rather than the data: age (adult.names extracted persons
#: older than 16; the census top-codes age at 90), education-num (the 16 education levels),
#: capital gain and loss (five-digit census income fields, top-coded at 99,999),
#: hours-per-week (the census field's range, 1 to 99).
ADULT_NUMERIC: dict[str, tuple[float, float]] = {
    "age": (17, 90),
    "education-num": (1, 16),
    "capital-gain": (0, 99_999),
    "capital-loss": (0, 99_999),
    "hours-per-week": (1, 99),
}
#: Declared on a log scale by default: capital gain and loss are 0 for about 92% and 95% of
#: people and spread over five digits otherwise; on a linear scale a gain of 5,000 is 0.05,
#: a feature DP-SGD barely moves (``--adult-log`` changes the list; ``none`` for linear).
ADULT_LOG = ("capital-gain", "capital-loss")
#: Bin edges for ``--adult-bins``: round thousands to 10,000, then 15,000, 20,000 and 50,000
#: (public round numbers chosen before looking at the data, never its quantiles). A gain
#: past a few thousand is a threshold effect (who has one at all, who has a large one)
#: that one weight on a scaled amount cannot draw.
ADULT_BINS = [1, *range(1_000, 10_001, 1_000), 15_000, 20_000, 50_000]
ADULT_COLUMNS = ["age", "workclass", "education", "education-num", "marital-status",
                 "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
                 "hours-per-week", "native-country"]  # fmt: skip
PRIVACY = {"epsilon_total": 100.0, "delta": DELTA, "max_epsilon_per_run": 10.0}
PRICE = {"per_run": "1.00", "per_epsilon": "0.50", "currency": "EUR"}


# -- data ---------------------------------------------------------------------------------


def _read_adult(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as f:
        reader = csv.reader(f, skipinitialspace=True)
        header = [h.strip() for h in next(reader)]
        rows = [[v.strip() for v in row] for row in reader if len(row) == len(header)]
    cols = {h: np.array([r[i] for r in rows], dtype=object) for i, h in enumerate(header)}
    cols["salary"] = np.array([s.rstrip(".") for s in cols["salary"]], dtype=object)
    return cols


def _csv_bytes(cols: dict[str, np.ndarray], names: list[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(zip(*(cols[n] for n in names), strict=True))
    return out.getvalue().encode()


def tabular_data(
    folder: Path,
    present: bool,
    rows: int | None,
    log_columns: tuple[str, ...] = ADULT_LOG,
    as_categories: tuple[str, ...] = (),
    binned: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Adult (or breast cancer) as listing metadata, the CSV body and the test split;
    ``log_columns`` are declared on a log scale, ``as_categories`` as categorical columns
    over every whole number of their public bounds, ``binned`` one-hot over ``ADULT_BINS``
    (``--adult-log``, ``--adult-categorical``, ``--adult-bins``: public metadata, nothing
    read from the data)."""
    if present:
        train = _read_adult(folder / "adult.data")
        test = _read_adult(folder / "adult.test")
        columns: list[dict[str, Any]] = []
        for name in ADULT_COLUMNS:
            if name in as_categories:
                lo, hi = ADULT_NUMERIC[name]
                values = [str(v) for v in range(int(lo), int(hi) + 1)]
                columns.append({"name": name, "type": "categorical", "categories": values})
            elif name in ADULT_NUMERIC:
                lo, hi = ADULT_NUMERIC[name]
                column = {"name": name, "type": "numeric", "min": lo, "max": hi}
                if name in binned:
                    column["bins"] = [e for e in ADULT_BINS if lo < e < hi]
                elif name in log_columns:
                    column["scale"] = "log"
                columns.append(column)
            else:
                columns.append(
                    {"name": name, "type": "categorical", "categories": ADULT_CATEGORIES[name]}
                )
        columns.append({"name": "salary", "type": "categorical", "categories": ["<=50K", ">50K"]})
        label, feature_names, source = "salary", ADULT_COLUMNS, "UCI Adult"
    else:
        from sklearn.datasets import load_breast_cancer
        from sklearn.model_selection import train_test_split

        data = load_breast_cancer()
        feature_names = [f"f{i}" for i in range(10)]
        x = data.data[:, :10]
        y = np.where(data.target == 0, "malignant", "benign").astype(object)
        xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0)
        train = {**{n: xtr[:, i] for i, n in enumerate(feature_names)}, "diagnosis": ytr}
        test = {**{n: xte[:, i] for i, n in enumerate(feature_names)}, "diagnosis": yte}
        # Fallback only: bounds are 1.5x the bundled set's maxima, not public definitions.
        columns = [
            {"name": n, "type": "numeric", "min": 0.0, "max": float(x[:, i].max() * 1.5 + 1)}
            for i, n in enumerate(feature_names)
        ]
        columns.append(
            {"name": "diagnosis", "type": "categorical", "categories": ["benign", "malignant"]}
        )
        label, source = "diagnosis", "scikit-learn breast cancer (fallback)"
    if rows and rows < len(train[label]):
        keep = np.random.default_rng(0).permutation(len(train[label]))[:rows]
        train = {k: v[keep] for k, v in train.items()}
    meta = {
        "title": f"{source} (bench)",
        "licence": "CC-BY-4.0",
        "format": "csv",
        "label": label,
        "columns": columns,
        "privacy": PRIVACY,
        "price": PRICE,
    }
    return {
        "name": "adult" if present else "cancer",
        "source": source,
        "meta": meta,
        "body": _csv_bytes(train, [*feature_names, label]),
        "media": "text/csv",
        "train": ({n: train[n] for n in feature_names}, train[label]),
        "test": ({n: test[n] for n in feature_names}, test[label]),
        "label_categories": columns[-1]["categories"],
        "rows": len(train[label]),
    }


def image_data(folder: Path, present: bool, rows: int | None) -> dict[str, Any]:
    """MNIST (or scikit-learn digits) as listing metadata, the NPZ body and the test split."""
    if present:
        with np.load(folder / "mnist.npz") as npz:
            xtr, ytr = npz["x_train"], npz["y_train"].astype(np.int64)
            xte, yte = npz["x_test"], npz["y_test"].astype(np.int64)
        shape, pixel, source = [28, 28], {"min": 0, "max": 255}, "MNIST"
    else:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        xtr, xte, ytr, yte = train_test_split(
            digits.images.astype(np.float32), digits.target, test_size=0.3, random_state=0
        )
        shape, pixel, source = [8, 8], {"min": 0, "max": 16}, "scikit-learn digits (fallback)"
    if rows and rows < len(ytr):
        # mnist.npz is sorted by class: subsample at random (seeded), never a prefix.
        keep = np.sort(np.random.default_rng(0).permutation(len(ytr))[:rows])
        xtr, ytr = xtr[keep], ytr[keep]
    sink = io.BytesIO()
    np.savez(sink, x=xtr, y=ytr)
    meta = {
        "title": f"{source} (bench)",
        "licence": "CC-BY-SA-3.0",
        "format": "npz",
        "image": {"shape": shape, "pixel_range": pixel, "class_names": [str(i) for i in range(10)]},
        "privacy": PRIVACY,
        "price": PRICE,
    }
    return {
        "name": "mnist" if present else "digits",
        "source": source,
        "meta": meta,
        "body": sink.getvalue(),
        "media": "application/x-npz",
        "train": ({"x": xtr}, ytr),
        "test": ({"x": xte}, yte),
        "label_categories": None,
        "rows": len(ytr),
    }


# -- scoring ------------------------------------------------------------------------------


def _labels(y: np.ndarray, categories: list[str] | None) -> np.ndarray:
    if categories is None:
        return np.asarray(y, dtype=np.int64)
    index = {c: i for i, c in enumerate(categories)}
    return np.array([index[str(v)] for v in y], dtype=np.int64)


def score(module: Any, features: np.ndarray, labels: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        logits = torch.cat([module(b) for b in torch.from_numpy(features).split(4096)])
    return float((logits.argmax(1).numpy() == labels).mean())


def nonprivate(
    spec: dict[str, Any], description: Mapping[str, Any], data: dict[str, Any], request: dict
) -> dict[str, Any]:
    """The same model and encoding without privacy: Adam, same batch size and epochs, all
    rows; the case's learning rate when its recipe is Adam, else Adam's usual one (an SGD
    step size made for clipped, averaged gradients is no step size for Adam)."""
    import torch
    from torch import nn

    from privacy.preprocessing import encode, input_shape, num_classes
    from privacy.specs import build_model

    lr = request["learning_rate"]
    if request.get("optimizer", "adam") != "adam":
        lr = 1e-3 if description["kind"] == "image" else 1e-2
    features, y = data["train"]
    encoded = encode(description, {**features, **_label_column(description, y)})
    test_x = _encode_test(description, data)
    test_y = _labels(data["test"][1], data["label_categories"])
    torch.manual_seed(0)
    model = build_model(
        spec, input_shape=input_shape(description), num_classes=num_classes(description)
    )
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(encoded.features), torch.from_numpy(encoded.labels)
    started = time.perf_counter()
    model.train()
    for _ in range(request["epochs"]):
        for idx in torch.randperm(len(yt)).split(request["batch_size"]):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    seconds = time.perf_counter() - started
    model.eval()
    settings = {"optimizer": "adam", "learning_rate": lr, "batch_size": request["batch_size"],
                "epochs": request["epochs"]}  # fmt: skip
    return {"accuracy": score(model, test_x, test_y), "train_s": seconds, "settings": settings}


def _label_column(description: Mapping[str, Any], y: np.ndarray) -> dict[str, np.ndarray]:
    if description["kind"] == "image":
        return {description["labels_key"]: y}
    return {description["label"]["name"]: y}


def _encode_test(description: Mapping[str, Any], data: dict[str, Any]) -> np.ndarray:
    from privacy.preprocessing import encode_features

    return encode_features(description, data["test"][0])


# -- the purchase -------------------------------------------------------------------------


def buy_and_score(inst: Any, dataset_id: str, data: dict[str, Any], case: dict) -> dict:
    """Quote, buy, run, download; accuracy of the delivered file on the test split."""
    from market.trading.execution import execute_run
    from privacy.model_io import load_model
    from privacy.preprocessing import encode_features

    client, buyer = inst.client, inst.buyer
    body = {
        "dataset_id": dataset_id,
        "model": case["model"],
        "epsilon": case["epsilon"],
        "delta": DELTA,
        "epochs": case["epochs"],
        "batch_size": case["batch_size"],
        "learning_rate": case["learning_rate"],
        "max_grad_norm": case["max_grad_norm"],
    }
    quote = client.post("/api/v1/quotes", headers=buyer, json=body)
    if quote.status_code >= 400 or not quote.get_json()["fits_budget"]:
        raise RuntimeError(f"quote refused: {quote.get_json()}")
    quote = quote.get_json()
    started = time.perf_counter()
    run = client.post("/api/v1/runs", json={"quote_id": quote["id"]}, headers=buyer).get_json()
    if "id" not in run:
        raise RuntimeError(f"purchase refused: {run}")
    execute_run(inst.market, run["id"])
    done = client.get(f"/api/v1/runs/{run['id']}", headers=buyer).get_json()
    if done["status"] != "succeeded":
        raise RuntimeError(f"run failed: {done['error']}")
    blob = client.get(f"/api/v1/runs/{run['id']}/model", headers=buyer).data
    wall = time.perf_counter() - started
    loaded = load_model(blob)
    features = encode_features(loaded.preprocessing, data["test"][0])
    accuracy = score(loaded.module, features, _labels(data["test"][1], data["label_categories"]))
    timings = done["cost_receipt"]["timings"]
    train_s = float(timings["train_s"])
    return {
        "accuracy": accuracy,
        "epsilon_spent": done["privacy_receipt"]["epsilon_spent"],
        "epsilon_training": done["privacy_receipt"]["epsilon_training"],
        "noise_multiplier": quote["mechanism"]["noise_multiplier"],
        "steps": quote["mechanism"]["steps"],
        "grad_sample_mode": done["privacy_receipt"]["grad_sample_mode"],
        "released_metrics": done["metrics"],
        "wall_s": wall,
        "train_s": train_s,
        "prepare_s": float(timings.get("prepare_s", 0.0)),
        "overhead_s": wall - train_s,
        "overhead_fraction": (wall - train_s) / wall,
        "preprocessing": loaded.preprocessing,
    }


#: The purchases ``--cases`` can name: (data kind, label, model). ``mnist-seed-mlp`` is the
#: founding model (``privacy.specs.SEED_MLP``: flatten, dense 128 ReLU, dropout 0.2,
#: dense 10) given as a layer list, as a researcher would send it.
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "mnist-seed-mlp": ("image", "seed mlp (layers)", {}),
    "mnist-mlp": ("image", "mlp 256 tanh", {"template": "mlp", "hidden": [256]}),
    "mnist-cnn": ("image", "cnn (Tramer-Boneh)", {"template": "cnn"}),
    "adult-lr": ("tabular", "logistic regression", {"template": "logistic_regression"}),
    "adult-mlp": ("tabular", "mlp 64 tanh", {"template": "mlp", "hidden": [64]}),
}
DEFAULT_CASES = "mnist-seed-mlp,mnist-mlp,mnist-cnn,adult-lr,adult-mlp"


def _model(key: str) -> dict[str, Any]:
    from privacy.specs import SEED_MLP

    return SEED_MLP if key == "mnist-seed-mlp" else CASES[key][2]


def cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The purchases to make: (data, model, epsilon) with the settings the quote form offers
    for that kind of data at that epsilon (``privacy.specs.template_defaults``: the measured
    recipe where there is one); ``--mlp-epochs`` and the like override its epochs."""
    from privacy.specs import template_defaults

    epsilons = {
        "image": [3.0] if args.smoke else _floats(args.image_epsilons),
        "tabular": [1.0] if args.smoke else _floats(args.tabular_epsilons),
    }
    out: list[dict[str, Any]] = []
    for key in args.cases.split(","):
        if key not in CASES:
            raise SystemExit(f"unknown case {key!r}; known: {', '.join(CASES)}")
        kind, label, model = CASES[key][0], CASES[key][1], _model(key)
        for eps in epsilons[kind]:
            d = template_defaults(model, kind, eps)
            out.append(
                {
                    "case": key,
                    "data": kind,
                    "label": label,
                    "model": model,
                    "epsilon": eps,
                    "epochs": _epochs(args, key) or d["epochs"],
                    "batch_size": d["batch_size"],
                    "learning_rate": d["learning_rate"],
                    "max_grad_norm": d["max_grad_norm"],
                    "optimizer": d["optimizer"],
                }
            )
    return out


def _epochs(args: argparse.Namespace, key: str) -> int:
    if key.startswith("adult"):
        return int(args.adult_epochs)
    return int(args.cnn_epochs if key == "mnist-cnn" else args.mlp_epochs)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


#: What each ``--sweep`` trains: (data kind, case key).
SWEEPS = {"adult": ("tabular", "adult-lr"), "mnist-mlp": ("image", "mnist-seed-mlp"),
          "mnist-cnn": ("image", "mnist-cnn")}  # fmt: skip


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe grid of one model (module docstring); prints and returns it."""
    import torch

    from market.config import TradingSettings
    from privacy import build_model, plan_run, train_private
    from privacy.preprocessing import describe, encode, input_shape, num_classes

    kind, key = SWEEPS[args.sweep]
    held_out = TradingSettings().holdout()  # the product's held-out rows, as purchases get
    folder, present = data_dir(args.data)
    if kind == "tabular":
        data = tabular_data(folder, present, args.adult_rows or None, *_adult_encoding(args))
    else:
        data = image_data(folder, present, args.mnist_rows)
    description = describe(data["meta"])
    features, y = data["train"]
    enc = encode(description, {**features, **_label_column(description, y)})
    test_x = _encode_test(description, data)
    test_y = _labels(data["test"][1], data["label_categories"])
    spec = _model(key)
    shape, classes = input_shape(description), num_classes(description)
    epsilons = _floats(args.sweep_epsilons)
    grid = [
        (batch, clip, epochs)
        for batch in args.sweep_batch.split(",")
        for clip in _floats(args.sweep_clip)
        for epochs in args.sweep_epochs.split(",")
    ]
    cells: list[dict[str, Any]] = []
    started = time.perf_counter()
    for eps in epsilons:
        for batch, clip, epochs in grid:
            plan = plan_run(rows=len(enc.labels), epsilon=eps, delta=DELTA,
                            epochs=int(epochs), batch_size=int(batch),
                            max_grad_norm=clip, **held_out)  # fmt: skip
            for optimizer, schedule in product(args.sweep_optimizer.split(","),
                                               args.sweep_schedule.split(",")):  # fmt: skip
                for lr in _floats(args.sweep_lr):
                    scores, seconds = [], []
                    for _ in range(args.sweep_repeats):
                        model = build_model(spec, input_shape=shape, num_classes=classes)
                        t0 = time.perf_counter()
                        result = train_private(model=model, features=enc.features,
                                               labels=enc.labels, plan=plan, learning_rate=lr,
                                               optimizer=optimizer,
                                               lr_schedule=schedule)  # fmt: skip
                        seconds.append(time.perf_counter() - t0)
                        model.load_state_dict(result.state_dict)
                        model.eval()
                        scores.append(score(model, test_x, test_y))
                    cell = {"epsilon": eps, "batch_size": int(batch), "optimizer": optimizer,
                            "lr_schedule": schedule, "learning_rate": lr,
                            "max_grad_norm": clip, "epochs": int(epochs),
                            "accuracy": float(np.mean(scores)), "accuracies": scores,
                            "train_s": seconds, "noise_multiplier": plan.noise_multiplier,
                            "holdout_rows": plan.holdout_rows,
                            "grad_sample_mode": result.grad_sample_mode}  # fmt: skip
                    cells.append(cell)
                    print(f"  eps {eps:<4g} batch {batch:<5} C {clip:<4g} epochs {epochs:<3} "
                          f"{optimizer:<5} {schedule:<8} lr {lr:<6g} "
                          f"acc {cell['accuracy']:.4f} ({np.mean(seconds):.0f} s)",
                          file=sys.stderr, flush=True)  # fmt: skip
    torch.manual_seed(0)
    reference = {"learning_rate": 0.01 if kind == "tabular" else 1e-3, "optimizer": "adam",
                 "epochs": 10, "batch_size": 256}  # fmt: skip
    clear = nonprivate(spec, description, data, reference)
    print(f"{args.sweep} sweep ({data['source']}, {len(enc.labels)} rows listed, mean of "
          f"{args.sweep_repeats}, {time.perf_counter() - started:.0f} s); non-private (adam, "
          f"lr {reference['learning_rate']:g}, batch 256, 10 epochs, same encoding): "
          f"{clear['accuracy']:.4f}")  # fmt: skip
    for eps in epsilons:
        rows = [c for c in cells if c["epsilon"] == eps]
        best = max(rows, key=lambda c: c["accuracy"])
        print(f"eps {eps:g}: best {best['accuracy']:.4f} at {best['optimizer']} "
              f"{best['lr_schedule']} lr {best['learning_rate']:g} batch {best['batch_size']} "
              f"C {best['max_grad_norm']:g} epochs {best['epochs']}")  # fmt: skip
        print("  optimizer/schedule/batch/C/epochs/lr=accuracy: " + " ".join(
            f"{c['optimizer']}/{c['lr_schedule']}/{c['batch_size']}/{c['max_grad_norm']:g}/"
            f"{c['epochs']}/{c['learning_rate']:g}={c['accuracy']:.3f}"
            for c in rows))  # fmt: skip
    return {"cells": cells, "nonprivate_accuracy": clear["accuracy"], "source": data["source"],
            "model": spec, "encoding": data["meta"].get("columns")}  # fmt: skip


def _adult_encoding(
    args: argparse.Namespace,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(columns on a log scale, numeric columns declared categorical, binned ones)."""
    logs = () if args.adult_log == "none" else tuple(args.adult_log.split(","))
    cats = tuple(c for c in args.adult_categorical.split(",") if c)
    bins = tuple(c for c in args.adult_bins.split(",") if c)
    unknown = [c for c in (*cats, *bins) if c not in ADULT_NUMERIC]
    if unknown:
        raise SystemExit(f"--adult-categorical/--adult-bins take numeric columns, not {unknown}")
    return logs, cats, bins


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder with mnist.npz, adult.data, adult.test")
    parser.add_argument("--mnist-rows", type=int, default=60_000, help="MNIST rows listed")
    parser.add_argument("--adult-rows", type=int, default=0, help="Adult rows listed (0: all)")
    parser.add_argument(
        "--adult-log",
        default=",".join(ADULT_LOG),
        help="Adult numeric columns declared on a log scale ('none': linear)",
    )
    parser.add_argument(
        "--adult-categorical",
        default="age,hours-per-week",
        help="Adult numeric columns declared categorical over their bounds ('' for none)",
    )
    parser.add_argument(
        "--adult-bins",
        default="capital-gain,capital-loss",
        help="Adult numeric columns declared binned over ADULT_BINS ('' for none); a binned "
        "column is not on a log scale",
    )
    parser.add_argument("--cases", default=DEFAULT_CASES, help=f"of {', '.join(CASES)}")
    parser.add_argument("--image-epsilons", default="1.2,3")
    parser.add_argument("--tabular-epsilons", default="0.5,1,3")
    parser.add_argument("--mlp-epochs", type=int, default=0, help="MNIST MLPs (0: the recipe's)")
    parser.add_argument("--cnn-epochs", type=int, default=0, help="MNIST CNN (0: the recipe's)")
    parser.add_argument("--adult-epochs", type=int, default=0, help="Adult (0: the recipe's)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks it starts")
    parser.add_argument("--json", help="write the raw figures here")
    parser.add_argument("--sweep", choices=list(SWEEPS), help="run a recipe grid instead")
    parser.add_argument("--sweep-epsilons", default="0.5,1,3")
    parser.add_argument("--sweep-repeats", type=int, default=2)
    parser.add_argument("--sweep-lr", default="0.003,0.01,0.03,0.1,0.3")
    parser.add_argument("--sweep-batch", default="256,1024")
    parser.add_argument("--sweep-optimizer", default="adam,sgd")
    parser.add_argument("--sweep-schedule", default="constant", help="lr_schedule list")
    parser.add_argument("--sweep-clip", default="1")
    parser.add_argument("--sweep-epochs", default="10")
    args = parser.parse_args()  # fmt: skip
    if args.smoke:
        args.mnist_rows, args.adult_rows = 600, 2000
        args.mlp_epochs = args.cnn_epochs = args.adult_epochs = 1
        args.cases = "mnist-seed-mlp,adult-lr"
    warnings.simplefilter("ignore")  # Opacus's notices (secure RNG, alpha ranges)

    import torch

    torch.set_num_threads(1)  # the worker's setting (docs/pitfalls.md)
    if args.sweep:
        write_json(args.json, {"args": vars(args), "sweep": sweep(args)})
        return 0
    folder, present = data_dir(args.data)
    planned = cases(args)
    kinds = {c["data"] for c in planned}
    sets = {}
    if "image" in kinds:
        sets["image"] = image_data(folder, present, args.mnist_rows)
    if "tabular" in kinds:
        sets["tabular"] = tabular_data(folder, present, args.adult_rows or None,
                                       *_adult_encoding(args))  # fmt: skip
    inst = make_instance("bench-accuracy-")
    ids = {key: inst.list_dataset(d["meta"], d["body"], d["media"]) for key, d in sets.items()}
    results: list[dict[str, Any]] = []
    baselines: dict[tuple[str, str], dict[str, float]] = {}
    started = time.perf_counter()
    for case in planned:
        data = sets[case["data"]]
        # As the quote form does: a small listing (the smoke run's fallback data) still gets
        # several batches per epoch (its row count is public).
        case = {**case, "batch_size": min(case["batch_size"], max(1, int(data["rows"] * 0.8) // 4))}
        r = buy_and_score(inst, ids[case["data"]], data, case)
        description = r.pop("preprocessing")
        key = (case["data"], case["label"])
        if key not in baselines:
            baselines[key] = nonprivate(case["model"], description, data, case)
        results.append(
            {
                "dataset": data["name"],
                "source": data["source"],
                "rows_listed": data["rows"],
                "test_rows": len(data["test"][1]),
                **case,
                **r,
                "nonprivate_accuracy": baselines[key]["accuracy"],
                "nonprivate_train_s": baselines[key]["train_s"],
                "nonprivate_settings": baselines[key]["settings"],
            }
        )
        print(f"  {data['name']:<7}{case['label']:<22}eps {case['epsilon']:<4g} "
              f"acc {r['accuracy']:.4f} (non-private {baselines[key]['accuracy']:.4f}) "
              f"train {r['train_s']:.1f}s wall {r['wall_s']:.1f}s", file=sys.stderr,
              flush=True)  # fmt: skip
    total = time.perf_counter() - started
    inst.close()

    print(f"accuracy vs epsilon (delta {DELTA:g}) through the API; test splits; "
          f"{platform.machine()}, 1 torch thread; {total:.0f} s")  # fmt: skip
    print(f"{'data':<8}{'model':<22}{'eps':>5}{'rows':>7}{'opt':>5}{'lr':>7}{'batch':>6}"
          f"{'C':>5}{'ep':>4}{'sigma':>7}{'DP acc':>8}{'non-DP':>8}{'train s':>9}{'wall s':>8}"
          f"{'overhead':>9}")  # fmt: skip
    for r in results:
        print(f"{r['dataset']:<8}{r['label']:<22}{r['epsilon']:>5g}{r['rows_listed']:>7}"
              f"{r['optimizer']:>5}{r['learning_rate']:>7g}{r['batch_size']:>6}"
              f"{r['max_grad_norm']:>5g}{r['epochs']:>4}{r['noise_multiplier']:>7.2f}"
              f"{r['accuracy']:>8.4f}{r['nonprivate_accuracy']:>8.4f}{r['train_s']:>9.1f}"
              f"{r['wall_s']:>8.1f}{r['overhead_fraction']:>9.1%}")  # fmt: skip
    print("published anchors (delta 1e-5):")
    for name, anchors in ANCHORS.items():
        for source, eps, acc in anchors:
            shown = "inf" if eps is None else f"{eps:g}"
            print(f"  {name:<6} eps {shown:<5} {acc:.2%}  {source}")
    write_json(
        args.json,
        {
            "args": vars(args),
            "data_present": present,
            "results": results,
            "anchors": {k: [list(a) for a in v] for k, v in ANCHORS.items()},
            "total_s": total,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
