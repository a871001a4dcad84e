"""Web forms of accounts (Flask-WTF: every form carries a CSRF token).

Length bounds only: the password rules live in one place (market.accounts.policy), and a
service's error is shown on the form that caused it.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, Optional


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class SignupForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    role = RadioField(
        "I want to",
        choices=[
            SelectChoice("researcher", "buy training runs (researcher)"),
            SelectChoice("owner", "list data (owner)"),
        ],
        default="researcher",
        validators=[DataRequired()],
    )
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    confirm = PasswordField(
        "Password again",
        validators=[DataRequired(), EqualTo("password", message="the two passwords differ")],
    )


class EmailForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])


class NewPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired(), Length(max=1024)])
    confirm = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("password", message="the two passwords differ")],
    )


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=1024)]
    )
    new_password = PasswordField("New password", validators=[DataRequired(), Length(max=1024)])
    confirm = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("new_password", message="the two passwords differ")],
    )


class UserFilterForm(FlaskForm):
    """The admin page's search: a GET form, so no CSRF token."""

    class Meta:
        csrf = False

    q = StringField("E-mail contains", validators=[Optional(), Length(max=254)])
    role = SelectField(
        "Role",
        choices=[
            SelectChoice("", "any role"),
            SelectChoice("owner", "owner"),
            SelectChoice("researcher", "researcher"),
            SelectChoice("auditor", "auditor"),
            SelectChoice("admin", "admin"),
        ],
        validators=[Optional()],
    )
    status = SelectField(
        "Status",
        choices=[
            SelectChoice("", "any status"),
            SelectChoice("pending", "pending"),
            SelectChoice("active", "active"),
            SelectChoice("suspended", "suspended"),
        ],
        validators=[Optional()],
    )


class RoleForm(FlaskForm):
    role = SelectField(
        "Role",
        choices=[
            SelectChoice("owner", "owner"),
            SelectChoice("researcher", "researcher"),
            SelectChoice("auditor", "auditor"),
            SelectChoice("admin", "admin"),
        ],
        validators=[DataRequired()],
    )


class NewTokenForm(FlaskForm):
    name = StringField("Token name", default="api", validators=[DataRequired(), Length(max=80)])


class ConfirmForm(FlaskForm):
    """A button-only form: its CSRF token is the whole point."""
