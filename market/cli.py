"""The ``market`` command.

Exit codes (docs/api.md): 0 success, 1 the operation failed, 2 bad usage. Errors go to
stderr as one readable sentence, never a traceback.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from market.accounts.demo import DEMO_ACCOUNTS
from market.accounts.models import Role
from market.config import Settings, load_settings, new_secret_key
from market.errors import MarketError

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def reports_errors(command: F) -> F:
    """Turn a MarketError into one line on stderr and exit status 1."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MarketError as exc:
            _fail(exc.message)

    return wrapper  # type: ignore[return-value]


def _settings() -> Settings:
    return load_settings()


def _services(settings: Settings) -> Any:
    from market import create_services

    return create_services(settings)


def _require_migrated(settings: Settings) -> None:
    from alembic.script import ScriptDirectory

    from market.migrations import alembic_config, current_revision

    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise MarketError(f"no database at {url}: run `market init` first")
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    try:
        current = current_revision(url)
    except Exception as exc:  # an unreachable server, wrong credentials
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise MarketError(f"cannot open the database at {url}: {reason}") from exc
    if current != head:
        raise MarketError(
            f"the database at {settings.database_url} is not at the current schema: "
            "run `market init` first"
        )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="market")
def main() -> None:
    """A data marketplace that sells differentially private training runs, never rows.

    Settings come from config/default.toml, config/local.toml and MARKET_* variables
    (MARKET_HOME sets the instance folder). Start with `market init`, then `market serve`.
    """
    from market.ops.files import private_umask

    private_umask()  # every instance file this command creates is 0600, every folder 0700


@main.command()
@reports_errors
def init() -> None:
    """Create the instance folder, migrate the database to the current schema, create keys.

    Safe to run again: what exists is kept, missing pieces are added.
    """
    from market.migrations import upgrade_to_head

    settings = _settings()
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    key_file = settings.secret_key_file
    if not settings.app.secret_key and not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(new_secret_key() + "\n")
        click.echo(f"created the session signing key {key_file}")
    upgrade_to_head(settings.database_url)
    click.echo(f"database ready: {settings.database_url}")
    from privacy.vault import init_keydir

    version = init_keydir(settings.key_dir)
    click.echo(f"key-encryption keys ready: {settings.key_dir} (newest version {version})")
    from market.audit import ensure_signing_key

    click.echo(f"audit log signing key ready: {ensure_signing_key(settings)}")
    _sweep_orphans(settings, older_than_s=3600)
    _secure_instance(settings)
    click.echo(f"instance folder ready: {home}")


def _sweep_orphans(settings: Settings, *, older_than_s: float) -> None:
    """Remove ciphertext that no committed listing refers to (left by a crash mid-upload)."""
    from market.ops.files import sweep_orphans

    market = _services(settings)
    for name in sweep_orphans(market, older_than_s=older_than_s):
        click.echo(f"removed orphaned ciphertext {name}")
    market.database.dispose()


def _secure_instance(settings: Settings) -> None:
    """Files made by older versions (market.db and queue.db were 0644) become private."""
    from market.ops.files import secure_instance

    for path in secure_instance(settings):
        click.echo(f"made private: {path}")


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: server.host).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: server.port).")
@reports_errors
def serve(host: str | None, port: int | None) -> None:
    """Serve the web interface and the API (gunicorn; Ctrl-C stops)."""
    from market.server import run_server

    settings = _settings()
    _require_migrated(settings)
    _secure_instance(settings)
    _sweep_orphans(settings, older_than_s=settings.ops.partial_max_age_s)
    supervisor = None
    if settings.queue.backend == "sqlite":
        # The embedded default: one command is a whole marketplace (web + worker), and the
        # worker is restarted with backoff when it dies (market.ops.supervisor).
        from market.ops.supervisor import WorkerSupervisor

        supervisor = WorkerSupervisor(settings).start()
    try:
        run_server(
            settings,
            host=host or settings.server.host,
            port=port or settings.server.port,
        )
    finally:
        if supervisor is not None:
            supervisor.stop()


@main.command()
@click.option(
    "--threads",
    type=int,
    default=None,
    help="Runs trained at once (default: queue.worker_threads).",
)
@reports_errors
def worker(threads: int | None) -> None:
    """Run training jobs from the queue (Ctrl-C stops after the current runs).

    Needs the private key files: only worker machines hold them. With the embedded SQLite
    queue `market serve` starts one for you; with Redis, run this on any number of machines.
    """
    from market.trading.execution import reap_lost_runs

    settings = _settings()
    _require_migrated(settings)
    market = _services(settings)
    try:
        market.worker_vault.keyring.current_version  # noqa: B018 - fail fast without keys
    except Exception as exc:
        raise MarketError(
            f"this worker cannot load the private keys in {settings.key_dir}: {exc}"
        ) from exc
    lost = reap_lost_runs(market)
    if lost:
        click.echo(f"failed {len(lost)} run(s) whose worker was lost: {', '.join(lost)}")
    from market.trading import calibration

    worker_class = settings.queue.worker_class
    if worker_class not in settings.costing.worker_classes:
        raise MarketError(f"queue.worker_class {worker_class!r} names no costing.worker_classes")
    try:
        calibration.require_measurable_gpu(settings, worker_class)
    except calibration.GpuUnavailable as exc:
        raise MarketError(str(exc)) from exc
    fit = calibration.calibrate_and_store(market, worker_class)
    if fit is not None:
        click.echo(
            f"calibrated worker class {worker_class}: {len(fit.points)} timed runs, expected "
            f"error {fit.relative_error:.0%}, {fit.avg_power_w:.1f} W ({fit.method})"
        )
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from market.ops.heartbeat import Heartbeat

    pulse = Heartbeat(
        market.database,
        interval_s=settings.ops.heartbeat_s,
        backend=settings.queue.backend,
        worker_class=worker_class,
    ).start()
    click.echo(f"worker ready on the {settings.queue.backend} queue")
    try:
        market.queue.consumer(workers=threads).run()
    finally:
        pulse.stop()


@main.group()
def keys() -> None:
    """Manage the key-encryption keys that wrap every dataset's data key."""


@keys.command("rotate")
@reports_errors
def keys_rotate() -> None:
    """Add a new key version and re-wrap every dataset's data key under it.

    Ciphertext is neither read nor rewritten. Safe to interrupt and run again: keys already
    under the newest version are left alone. Then raise vault.min_key_version to stop
    accepting the old version.
    """
    from market.catalog.rotation import rewrap_all
    from privacy.vault import rotate

    settings = _settings()
    _require_migrated(settings)
    version = rotate(settings.key_dir)
    click.echo(f"key version {version} is now the newest in {settings.key_dir}")
    market = _services(settings)
    moved, already = rewrap_all(market)
    click.echo(f"re-wrapped {moved} data key(s); {already} already under version {version}")


@main.group()
def users() -> None:
    """Manage accounts."""


@users.command("create")
@click.option("--email", required=True, help="The person's e-mail; it is their login.")
@click.option(
    "--role",
    required=True,
    type=click.Choice([r.value for r in Role]),
    help="owner lists data, researcher buys runs, auditor reviews ledgers, admin does all.",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input instead of prompting (for scripts).",
)
@reports_errors
def users_create(email: str, role: str, password_stdin: bool) -> None:
    """Create an account (passwords need 12+ characters)."""
    from market.accounts import services as accounts

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        raise click.UsageError("no terminal to prompt on: pass --password-stdin")
    settings = _settings()
    _require_migrated(settings)
    market = _services(settings)
    with market.database.write() as session:
        user = accounts.create_user(
            session, email=email, role=role, password=password, passwords=market.passwords
        )
        click.echo(f"created {user.role.value} {user.email} (id {user.id})")


def _change_user(email: str, change: Callable[[Any, Any], str]) -> None:
    from market.accounts import services as accounts

    settings = _settings()
    _require_migrated(settings)
    market = _services(settings)
    with market.database.write() as session:
        user = accounts.find_user(session, email)
        message = change(session, user)
    market.database.dispose()
    click.echo(message)


@users.command("suspend")
@click.option("--email", required=True, help="The account's e-mail.")
@reports_errors
def users_suspend(email: str) -> None:
    """Suspend an account: its web sessions end and its API tokens are revoked at once."""
    from market.accounts import services as accounts

    def change(session: Any, user: Any) -> str:
        revoked = accounts.set_active(session, user=user, active=False, actor_id=None)
        return f"suspended {user.email}; {revoked} API token(s) revoked, web sessions ended"

    _change_user(email, change)


@users.command("reactivate")
@click.option("--email", required=True, help="The account's e-mail.")
@reports_errors
def users_reactivate(email: str) -> None:
    """Let a suspended account sign in again (its old tokens stay revoked)."""
    from market.accounts import services as accounts

    def change(session: Any, user: Any) -> str:
        accounts.set_active(session, user=user, active=True, actor_id=None)
        return f"reactivated {user.email}"

    _change_user(email, change)


@users.command("set-role")
@click.option("--email", required=True, help="The account's e-mail.")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@reports_errors
def users_set_role(email: str, role: str) -> None:
    """Give an account another role; its web sessions end."""
    from market.accounts import services as accounts

    def change(session: Any, user: Any) -> str:
        accounts.set_role(session, user=user, role=role, actor_id=None)
        return f"{user.email} is now {role}; web sessions ended"

    _change_user(email, change)


@users.command("demo")
@reports_errors
def users_demo() -> None:
    """Create the demo accounts, or give them fresh passwords, and print the credentials.

    For trying the product locally; never run it on a shared instance.
    """
    from sqlmodel import select

    from market.accounts import services as accounts
    from market.accounts.models import User

    settings = _settings()
    _require_migrated(settings)
    market = _services(settings)
    credentials = []
    with market.database.write() as session:
        for email, role in DEMO_ACCOUNTS:
            password = secrets.token_urlsafe(12)
            user = session.exec(select(User).where(User.email == email)).first()
            if user is None:
                accounts.create_user(
                    session, email=email, role=role, password=password, passwords=market.passwords
                )
            else:
                accounts.set_password(
                    session, user=user, password=password, passwords=market.passwords
                )
            credentials.append((email, role.value, password))
    click.echo("Demo accounts (passwords are new each time this runs):")
    for email, role_name, password in credentials:
        click.echo(f"  {role_name:<11} {email:<26} {password}")


@main.command()
@click.option(
    "--no-train",
    is_flag=True,
    help="Only seed the accounts and list the datasets (what `make run` does).",
)
@click.option(
    "--keep-passwords",
    is_flag=True,
    help="Leave existing demo accounts' passwords as they are (new accounts still get one).",
)
@reports_errors
def demo(no_train: bool, keep_passwords: bool) -> None:
    """Seed an owner, a researcher and an auditor, list two scikit-learn datasets, buy a
    private run of the seed MLP on digits and a logistic regression on breast cancer, and
    print both receipts and each model's accuracy on rows held back from the listing.

    Works standalone (no server needed); safe to rerun: listings are reused, runs are new.
    """
    from market.demo import run_demo

    settings = _settings()
    _require_migrated(settings)
    run_demo(settings, train=not no_train, reset_passwords=not keep_passwords, echo=click.echo)


def _register_groups() -> None:
    from market.audit.cli import audit

    main.add_command(audit)


_register_groups()


if __name__ == "__main__":
    main()
