"""Web forms of accounts (Flask-WTF: every form carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class NewTokenForm(FlaskForm):
    name = StringField("Token name", default="api", validators=[DataRequired(), Length(max=80)])


class ConfirmForm(FlaskForm):
    """A button-only form: its CSRF token is the whole point."""
