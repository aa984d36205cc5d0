"""Commands beside checking: the pre-send gateway, learning recipient history, and
approving a mailout. Registered on the main app by :mod:`mailguard.cli`, in the order
``mailguard --help`` lists them; like ``cli.py``, parsing only, the work is in
:mod:`mailguard.commands`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailguard.cli_options import (
    ConfigOption,
    InternalDomainOption,
    NoConfigOption,
    config_source,
    run,
)


# fmt: off
def proxy(
    listen: Annotated[str | None, typer.Option(
        "--listen", help="HOST:PORT to accept clients on (default 127.0.0.1:2525).")] = None,
    relay: Annotated[str | None, typer.Option(
        "--relay", help="Upstream submission server HOST:PORT.")] = None,
    relay_security: Annotated[str | None, typer.Option(
        "--relay-security", help="starttls (default), tls or none.")] = None,
    relay_ca: Annotated[str | None, typer.Option(
        "--relay-ca", help="PEM file of CAs to verify the upstream.")] = None,
    relay_user: Annotated[str | None, typer.Option(
        "--relay-user", help="Upstream login; password from MAILGUARD_RELAY_PASSWORD.")] = None,
    tls_cert: Annotated[str | None, typer.Option(
        "--tls-cert", help="Certificate (PEM) for client STARTTLS.")] = None,
    tls_key: Annotated[str | None, typer.Option(
        "--tls-key", help="Private key (PEM) for --tls-cert.")] = None,
    journal: Annotated[str | None, typer.Option(
        "--journal", help="SQLite retry journal for split copies.")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Processes serving the port (default 1; one per core).")] = None,
    hash_password: Annotated[str | None, typer.Option(
        "--hash-password", help="Print a users-file line for USER (password from stdin).")] = None,
    config_path: ConfigOption = None,
    no_config: NoConfigOption = False,
    internal_domain: InternalDomainOption = None,
    log_level: Annotated[str, typer.Option(
        "--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Pre-send gateway: check each message a script sends, then relay, split or refuse it."""
    from mailguard.commands.proxy import hash_password_line, run_proxy

    if hash_password is not None:
        run(lambda: hash_password_line(hash_password))
    options = {"listen": listen, "relay": relay, "relay_security": relay_security,
               "relay_ca": relay_ca, "relay_user": relay_user, "tls_cert": tls_cert,
               "tls_key": tls_key, "journal": journal, "workers": workers}
    run(lambda: run_proxy(config_source(config_path, no_config, internal_domain), options,
                           log_level=log_level))
# fmt: on


StoreOption = Annotated[Path | None, typer.Option("--store", help="History store file.")]
history_app = typer.Typer(help="Inspect or upgrade the history store.", no_args_is_help=True)


def learn(
    sources: Annotated[list[str], typer.Argument(help="mbox, Maildir, .eml folder, IMAP URL.")],
    store: StoreOption = None,
    config_path: ConfigOption = None,
    no_config: NoConfigOption = False,
    glob: Annotated[str, typer.Option("--glob", help="File pattern in .eml folders.")] = "*.eml",
) -> None:
    """Learn who writes to whom from Sent mail (addresses kept only as keyed hashes).

    The store defaults to the config file's history store setting."""
    from mailguard.commands.learn import run_learn

    run(
        lambda: run_learn(sources, store, config_source(config_path, no_config, None), pattern=glob)
    )


@history_app.command("stats")
def history_stats(
    store: StoreOption = None, config_path: ConfigOption = None, no_config: NoConfigOption = False
) -> None:
    """Sizes and counts of the history store (never an address)."""
    from mailguard.commands.learn import run_stats

    run(lambda: run_stats(store, config_source(config_path, no_config, None)))


@history_app.command("migrate")
def history_migrate(
    store: StoreOption = None, config_path: ConfigOption = None, no_config: NoConfigOption = False
) -> None:
    """Upgrade the history store's schema to this version of mailguard."""
    from mailguard.commands.learn import run_migrate

    run(lambda: run_migrate(store, config_source(config_path, no_config, None)))


def keygen(
    keyfile: Annotated[Path, typer.Argument(help="Key file to create (never overwritten).")],
    key_id: Annotated[
        str | None, typer.Option("--key-id", help="Key id (default: date-random).")
    ] = None,
) -> None:
    """Create an approval key (32 random bytes, mode 0600) for `mailguard approve`."""
    from mailguard.commands.approval import run_keygen

    run(lambda: run_keygen(keyfile, key_id))


def approve(
    message: Annotated[str, typer.Argument(help="Message file to approve, or - for stdin.")],
    key: Annotated[Path, typer.Option("--key", help="Approval key file (mailguard keygen).")],
    valid_for: Annotated[str, typer.Option("--valid-for", help="How long: 24h, 90m, 7d.")] = "24h",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask (scripts).")] = False,
    show_addresses: Annotated[
        bool, typer.Option("--show-addresses", help="List the visible addresses in the report.")
    ] = False,
    config_path: ConfigOption = None,
    no_config: NoConfigOption = False,
) -> None:
    """Check a message, show the report and, once confirmed, sign it as approved."""
    from mailguard.commands.approval import run_approve

    source = config_source(config_path, no_config, None)
    run(
        lambda: run_approve(
            message, key, source, valid_for=valid_for, output=output, yes=yes,
            show_addresses=show_addresses,
        )
    )  # fmt: skip
