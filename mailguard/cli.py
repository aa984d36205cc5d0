"""Command line: parses options and calls :mod:`mailguard.commands`, no logic of its own.

Exit codes follow the linter convention: 0 nothing at or above ``--fail-on``, 1 something
is, 2 usage, configuration or input error (an unreadable message is never "clean").
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from mailguard import __version__
from mailguard.commands import CommandError
from mailguard.commands.settings import ConfigSource
from mailguard.errors import ConfigError
from mailguard.scoring import EXIT_ERROR

app = typer.Typer(
    name="mailguard",
    help="Catch emails that expose their recipients (To/Cc instead of Bcc) before they are sent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Config file (default: nearest mailguard.toml/pyproject)."),
]
NoConfigOption = Annotated[
    bool, typer.Option("--no-config", help="Ignore config files; use the defaults.")
]
QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Only problems and the summary (text output)."),
]
InternalDomainOption = Annotated[
    list[str] | None,
    typer.Option("--internal-domain", help="Your organisation's domain; repeat. Overrides config."),
]
DnsOption = Annotated[
    bool, typer.Option("--dns", help="Look recipient domains up in DNS (rules that need dns).")
]
DnsServerOption = Annotated[
    list[str] | None,
    typer.Option(
        "--dns-server", help="DNS server HOST[:PORT] to ask instead of the system's; repeat."
    ),
]


class Format(enum.StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"


class FailOn(enum.StrEnum):
    warn = "warn"
    block = "block"


class Mode(enum.StrEnum):
    outgoing = "outgoing"
    archived = "archived"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mailguard {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """mailguard inspects email before it is sent and flags exposed recipient lists."""


def _fail(message: str) -> typer.Exit:
    typer.echo(f"mailguard: error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


def _run(command: Callable[[], int]) -> NoReturn:
    """Run a command; its usage and configuration errors are exit status 2 with a message."""
    try:
        code = command()
    except (CommandError, ConfigError) as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(code)


def _source(
    path: Path | None,
    no_config: bool,
    internal: list[str] | None,
    mode: str | None = None,
    dns: bool | None = None,
    dns_servers: list[str] | None = None,
) -> ConfigSource:
    return ConfigSource(path, no_config, tuple(internal or ()), mode, dns, tuple(dns_servers or ()))


@app.command()
def check(
    paths: Annotated[
        list[str],
        typer.Argument(help="Message files, folders (searched recursively) or - for stdin."),
    ],
    mail_from: Annotated[
        str | None, typer.Option("--mail-from", help="SMTP envelope sender (MAIL FROM).")
    ] = None,
    rcpt_to: Annotated[
        list[str] | None,
        typer.Option("--rcpt-to", help="SMTP envelope recipient (RCPT TO); repeat for each."),
    ] = None,
    smtp_data: Annotated[
        bool,
        typer.Option("--smtp-data", help="Input is an SMTP DATA section (dot-stuffed, CRLF)."),
    ] = False,
    fmt: Annotated[
        Format | None,
        typer.Option(
            "--format",
            "-f",
            help="Output format (default: the --output file's extension, else text).",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to this file.")
    ] = None,
    quiet: QuietOption = False,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 1 if any message is at or above this.")
    ] = FailOn.block,
    config_path: ConfigOption = None,
    no_config: NoConfigOption = False,
    internal_domain: InternalDomainOption = None,
    dns: DnsOption = False,
    dns_server: DnsServerOption = None,
    show_addresses: Annotated[
        bool, typer.Option("--show-addresses", help="List the visible addresses in the report.")
    ] = False,
    redact: Annotated[
        bool, typer.Option("--redact", help="Replace addresses in the report by keyed hashes.")
    ] = False,
    mode: Annotated[
        Mode,
        typer.Option(
            help="outgoing: about to be sent; archived: Sent-folder copies (Bcc is a record)."
        ),
    ] = Mode.outgoing,
    glob: Annotated[str, typer.Option("--glob", help="File pattern inside folders.")] = "*.eml",
    history: Annotated[
        str | None,
        typer.Option("--history", help="History store (mailguard learn) for the history rules."),
    ] = None,
) -> None:
    """Check messages before sending: exit 0 clean, 1 at/above --fail-on, 2 error."""
    from dataclasses import replace

    from mailguard.commands.check import run_check

    _run(
        lambda: run_check(
            paths,
            replace(
                _source(config_path, no_config, internal_domain, None, dns or None, dns_server),
                history=history,
            ),
            mail_from=mail_from,
            rcpt_to=tuple(rcpt_to or ()),
            smtp_data=smtp_data,
            fmt=fmt.value if fmt else None,
            output=output,
            quiet=quiet,
            fail_on=fail_on.value,
            show_addresses=show_addresses,
            redact=redact,
            mode=mode.value,
            pattern=glob,
        ),
    )


class MilterMode(enum.StrEnum):
    enforce = "enforce"
    monitor = "monitor"


@app.command()
def milter(
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            help="Socket to serve: unix:/path/to/socket or inet:HOST:PORT (Postfix style).",
        ),
    ],
    config_path: ConfigOption = None,
    no_config: NoConfigOption = False,
    mode: Annotated[
        MilterMode | None,
        typer.Option(
            help="enforce: act on verdicts; monitor: never refuse, only add headers and log. "
            "Overrides mode in the config file's milter table."
        ),
    ] = None,
    internal_domain: InternalDomainOption = None,
    socket_mode: Annotated[
        str, typer.Option("--socket-mode", help="Octal permissions of a unix socket.")
    ] = "660",
    socket_group: Annotated[
        str | None,
        typer.Option("--socket-group", help="Group of a unix socket (e.g. postfix)."),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Serve the milter protocol so Postfix or Sendmail can refuse risky mail at send time."""
    from mailguard.commands.milter import run_milter

    source = _source(config_path, no_config, internal_domain, mode.value if mode else None)
    _run(
        lambda: run_milter(
            listen,
            source,
            socket_mode=socket_mode,
            socket_group=socket_group,
            log_level=log_level,
        ),
    )


class ScanFormat(enum.StrEnum):
    text = "text"
    json = "json"
    csv = "csv"
    html = "html"


@app.command()
def scan(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="mbox files, Maildirs, folders of .eml files, .eml files, or IMAP folders "
            "(imaps://user@host[:port]/Folder; password from MAILGUARD_IMAP_PASSWORD)."
        ),
    ],
    fmt: Annotated[
        ScanFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="Output format (default: the --output file's extension, else text).",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the register to this file.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar: only problems and the summary.")
    ] = False,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", help="Worker processes (default: all cores).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only messages dated on or after YYYY-MM-DD.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only messages dated on or before YYYY-MM-DD.")
    ] = None,
    redact: Annotated[
        bool,
        typer.Option("--redact", help="Addresses as keyed hashes, subjects withheld."),
    ] = False,
    show_addresses: Annotated[
        bool, typer.Option("--show-addresses", help="List the exposed addresses per incident.")
    ] = False,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 1 if any message is at or above this.")
    ] = FailOn.warn,
    config_path: ConfigOption = None,
    no_config: NoConfigOption = False,
    internal_domain: InternalDomainOption = None,
    dns: Annotated[
        bool,
        typer.Option("--dns", help="Look recipient domains up in DNS (off for scan otherwise)."),
    ] = False,
    dns_server: DnsServerOption = None,
    glob: Annotated[str, typer.Option("--glob", help="File pattern in .eml folders.")] = "*.eml",
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Run on a Dask cluster: its scheduler, tcp://HOST:8786."),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="Incremental store (SQLite): re-runs read only new mail."),
    ] = None,
    pst_folder: Annotated[
        list[str] | None,
        typer.Option("--pst-folder", help="Only this folder of .pst/.ost files (repeatable)."),
    ] = None,
) -> None:
    """Audit archived mail for past exposures and write an incident register.

    Exit status: 0 no incident at or above --fail-on; 1 incidents;
    2 a source or message could not be read, or a usage error;
    130 interrupted (what was found so far is still written).
    """
    from mailguard.commands.scan import run_scan

    _run(
        lambda: run_scan(
            sources,
            # Old mail's domains may have changed since: DNS only when asked for here.
            _source(config_path, no_config, internal_domain, None, dns, dns_server),
            fmt=fmt.value if fmt else None,
            output=output,
            quiet=quiet,
            jobs=jobs,
            since=since,
            until=until,
            redact=redact,
            show_addresses=show_addresses,
            fail_on=fail_on.value,
            pattern=glob,
            scheduler=scheduler,
            state=state,
            pst_folders=tuple(pst_folder or ()),
        ),
    )


class DomainsFormat(enum.StrEnum):
    text = "text"
    json = "json"


@app.command()
def domains(
    sources: Annotated[
        list[str],
        typer.Argument(help="Sources as for scan: .eml files/folders, mbox, Maildir, IMAP URL."),
    ],
    fmt: Annotated[
        DomainsFormat, typer.Option("--format", "-f", help="Output format.")
    ] = DomainsFormat.text,
    config_path: ConfigOption = None,
    no_config: NoConfigOption = False,
    internal_domain: InternalDomainOption = None,
    dns: Annotated[
        bool,
        typer.Option("--dns", help="Compare MX hosts and SPF includes with your domains."),
    ] = False,
    dns_server: DnsServerOption = None,
    deadline: Annotated[
        float, typer.Option("--deadline", help="Seconds for all DNS lookups together.")
    ] = 10.0,
    glob: Annotated[str, typer.Option("--glob", help="File pattern in .eml folders.")] = "*.eml",
) -> None:
    """List the recipient domains of some mail; suggest which may be your own (never applied).

    Exit status: 0; 2 a source or message could not be read, or a usage error.
    """
    from mailguard.commands.domains import run_domains

    _run(
        lambda: run_domains(
            sources,
            _source(config_path, no_config, internal_domain, None, dns, dns_server),
            fmt=fmt.value,
            deadline=deadline,
            pattern=glob,
        ),
    )


StoreOption = Annotated[Path | None, typer.Option("--store", help="History store file.")]
history_app = typer.Typer(help="Inspect or upgrade the history store.", no_args_is_help=True)
app.add_typer(history_app, name="history")


@app.command()
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

    _run(lambda: run_learn(sources, store, _source(config_path, no_config, None), pattern=glob))


@history_app.command("stats")
def history_stats(
    store: StoreOption = None, config_path: ConfigOption = None, no_config: NoConfigOption = False
) -> None:
    """Sizes and counts of the history store (never an address)."""
    from mailguard.commands.learn import run_stats

    _run(lambda: run_stats(store, _source(config_path, no_config, None)))


@history_app.command("migrate")
def history_migrate(
    store: StoreOption = None, config_path: ConfigOption = None, no_config: NoConfigOption = False
) -> None:
    """Upgrade the history store's schema to this version of mailguard."""
    from mailguard.commands.learn import run_migrate

    _run(lambda: run_migrate(store, _source(config_path, no_config, None)))


@app.command()
def keygen(
    keyfile: Annotated[Path, typer.Argument(help="Key file to create (never overwritten).")],
    key_id: Annotated[
        str | None, typer.Option("--key-id", help="Key id (default: date-random).")
    ] = None,
) -> None:
    """Create an approval key (32 random bytes, mode 0600) for `mailguard approve`."""
    from mailguard.commands.approval import run_keygen

    _run(lambda: run_keygen(keyfile, key_id))


@app.command()
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

    source = _source(config_path, no_config, None)
    _run(
        lambda: run_approve(
            message, key, source, valid_for=valid_for, output=output, yes=yes,
            show_addresses=show_addresses,
        )
    )  # fmt: skip


@app.command("rules")
def list_rules(config_path: ConfigOption = None, no_config: NoConfigOption = False) -> None:
    """List every rule (with custom ones from rule_paths): code, name, severity, weight."""
    from mailguard.commands.rules import rules_table

    _run(lambda: _echo_lines(rules_table(_source(config_path, no_config, None))))


@app.command()
def explain(
    code: Annotated[str, typer.Argument(help="Rule code, name or alias.")],
    config_path: ConfigOption = None,
    no_config: NoConfigOption = False,
) -> None:
    """Print a rule's documentation, options and examples."""
    from mailguard.commands import rules

    _run(lambda: _echo_lines([rules.explain(code, _source(config_path, no_config, None))]))


def _echo_lines(lines: list[str]) -> int:
    for line in lines:
        typer.echo(line)
    return 0


def main() -> None:
    app()
