"""The privacy library stands alone: no Flask, no database, no market import."""

from __future__ import annotations

import subprocess
import sys

import pytest

FORBIDDEN = ("market", "flask", "sqlalchemy", "sqlmodel")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


@pytest.mark.slow
def test_public_names_import_without_the_app():
    loaded = _modules_after(
        "from privacy import plan_run, train_private, PrivacyLedger, build_model\n"
        "import privacy.specs, privacy.training, privacy.accounting, privacy.release\n"
        "import privacy.preprocessing, privacy.model_io"
    )
    assert not {m for m in loaded if m.split(".")[0] in FORBIDDEN}


def test_importing_the_package_does_not_load_torch():
    loaded = _modules_after("import privacy")
    assert "torch" not in loaded and "opacus" not in loaded


def test_only_training_touches_the_privacy_engine():
    from pathlib import Path

    import privacy

    root = Path(privacy.__file__).parent
    users = sorted(p.name for p in root.glob("*.py") if "PrivacyEngine" in p.read_text())
    assert users == ["training.py"]


def test_unknown_attribute():
    import privacy

    with pytest.raises(AttributeError):
        privacy.does_not_exist  # noqa: B018
