"""The HTML interface: layout, home page, static files. Domain pages live in their packages."""

from __future__ import annotations

from flask import Blueprint, Flask, render_template

bp = Blueprint("web", __name__)


@bp.get("/")
def home() -> str:
    return render_template("home.html")


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    """For load balancers and start-up scripts: the process answers."""
    return {"status": "ok"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
