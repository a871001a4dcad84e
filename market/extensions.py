"""Flask extensions, created without an app and attached in ``create_app``."""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
login_manager = LoginManager()
# Limits are declared on the routes that need them (login); nothing is limited by default.
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)
