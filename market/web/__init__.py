"""The HTML interface: layout, home page, static files. Domain pages live in their packages."""

from __future__ import annotations

from flask import Blueprint, Flask, redirect, render_template, url_for
from werkzeug.wrappers import Response

bp = Blueprint("web", __name__)


@bp.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for /favicon.ico whatever the page links: point them at the real icon."""
    return redirect(url_for("static", filename="favicon.svg"), code=301)


@bp.get("/")
def home() -> str:
    return render_template("home.html")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
