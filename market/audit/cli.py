"""``market audit``: export the log, keep a checkpoint, verify an export offline.

Exit codes (docs/api.md): 0 verified / done, 1 the log failed verification or the
operation failed (one sentence on stderr naming the first bad entry or checkpoint), 2 bad
usage (click's own, or an unreadable public key or checkpoint file).

``verify`` opens no database and reads no settings: an auditor runs it on their own
machine with the export, the public key they obtained out of band, and optionally the
checkpoint they kept from an earlier visit.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from market.errors import MarketError

if TYPE_CHECKING:
    from market.config import Settings
    from market.db import Database


def _database_and_settings() -> tuple[Database, Settings]:
    from market.config import load_settings
    from market.db import Database, make_engine

    settings = load_settings()
    engine = make_engine(
        settings.database_url, sqlite_busy_timeout_ms=settings.database.sqlite_busy_timeout_ms
    )
    return Database(engine), settings


@click.group("audit")
def audit() -> None:
    """The tamper-evident audit log: export it, keep a checkpoint, verify offline."""


@audit.command("export")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="File to write (JSON Lines).",
)
def export_command(out: Path) -> None:
    """Sign a checkpoint of the current log and write every entry and checkpoint to OUT."""
    from market.audit.export import export_log

    try:
        database, settings = _database_and_settings()
        try:
            size = export_log(database, settings, out)
        finally:
            database.dispose()
    except MarketError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"error: cannot write {out}: {exc.strerror}", err=True)
        sys.exit(1)
    click.echo(f"exported {size} audit entries to {out}")


@audit.command("checkpoint")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the signed note to this file (keep it for a later --checkpoint).",
)
def checkpoint_command(out: Path | None) -> None:
    """Sign (if needed) and print the latest checkpoint as a signed note."""
    from market.audit import log

    try:
        database, settings = _database_and_settings()
        try:
            with database.write() as session:
                note = log.checkpoint_json(log.checkpoint(session, settings))["note"]
        finally:
            database.dispose()
    except MarketError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    if out is not None:
        out.write_text(note, encoding="utf-8")
    click.echo(note, nl=False)


@audit.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    "public_key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The log's Ed25519 public key (PEM), obtained out of band.",
)
@click.option(
    "--checkpoint",
    "old_checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint you kept earlier (signed note or JSON): catches truncation and forks.",
)
def verify_command(file: Path, public_key: Path, old_checkpoint: Path | None) -> None:
    """Verify FILE offline: hashes, signatures, consistency, and the re-derived ledgers."""
    from market.audit import signing
    from market.audit.verify import verify_export

    pem = public_key.read_bytes()
    try:
        signing.load_public_key(pem)
    except ValueError as exc:
        raise click.BadParameter(
            f"{public_key} is not an Ed25519 public key in PEM ({exc})",
            param_hint="--public-key",
        ) from None
    old_text = None
    if old_checkpoint is not None:
        try:
            old_text = old_checkpoint.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise click.BadParameter(
                f"{old_checkpoint} is not a text file", param_hint="--checkpoint"
            ) from None
    report = verify_export(file, pem, old_text)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not report.ok:
        click.echo(f"error: {report.summary()}", err=True)
        sys.exit(1)
    click.echo(report.summary())


@audit.command("privacy")
@click.option(
    "--config",
    "config",
    help="A worker class (costing.worker_classes) to audit; default every class sold.",
)
@click.option(
    "--canaries", type=click.IntRange(20, 4000), default=1000, show_default=True, help="m."
)
@click.option(
    "--epsilon", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True
)
@click.option(
    "--family",
    type=click.Choice(["seed_mlp", "logistic_regression"]),
    default="seed_mlp",
    show_default=True,
    help="The model family trained.",
)
@click.option("--seed", type=int, help="Canary inclusion and noise seed (default random).")
def privacy_command(
    config: str | None, canaries: int, epsilon: float, family: str, seed: int | None
) -> None:
    """Audit the product's own DP-SGD with canaries (docs/privacy-audit.md); log each report.

    Exits 1 when a claim is refuted."""
    import secrets

    from market.audit import log
    from privacy.audit import AuditSettings, run_audit

    try:
        database, settings = _database_and_settings()
    except MarketError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    classes = list(settings.costing.worker_classes)
    if config is not None and config not in classes:
        raise click.BadParameter(f"not one of {classes}", param_hint="--config")
    refuted = False
    try:
        for name in [config] if config else classes:
            report = run_audit(
                AuditSettings(
                    config=name,
                    family=family,
                    epsilon=epsilon,
                    accountant=settings.trading.accountant,
                    **settings.trading.holdout(),
                    max_physical_batch_size=settings.trading.max_physical_batch_size,
                    canaries=canaries,
                    seed=secrets.randbits(31) if seed is None else seed,
                )
            )
            with database.write() as session:
                entry = log.record(
                    session,
                    settings,
                    kind="privacy.audit",
                    subject=name,
                    actor_id=None,
                    data=report.to_json(),
                )
                seq = entry.seq
            click.echo(report.summary())
            click.echo(f"  logged as audit entry {seq}")
            refuted = refuted or report.refuted
    finally:
        database.dispose()
    sys.exit(1 if refuted else 0)
