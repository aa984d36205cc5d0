"""Command line: parses options and calls :mod:`mailguard.commands`, no logic of its own.

Exit codes follow the linter convention: 0 nothing at or above ``--fail-on``, 1 something
is, 2 usage, configuration or input error (an unreadable message is never "clean").
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer

from mailguard import __version__, cli_workflows
from mailguard.cli_options import (
    ConfigOption,
    DnsOption,
    DnsServerOption,
    FailOn,
    Format,
    InternalDomainOption,
    Mode,
    NoConfigOption,
    PrettyOption,
    QuietOption,
    interrupts_said,
)
from mailguard.cli_options import config_source as _source
from mailguard.cli_options import run as _run
from mailguard.commands.common import UNENCODABLE

app = typer.Typer(
    name="mailguard",
    help="Catch emails that expose their recipients (To/Cc instead of Bcc) before they are sent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
    pretty: PrettyOption = False,
    history: Annotated[
        str | None,
        typer.Option("--history", help="History store (mailguard learn) for the history rules."),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Processes judging files (default: all cores from 500 files on).",
        ),
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
            pretty=pretty,
            jobs=jobs,
        ),
        [*paths, output, config_path] if redact else None,
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


app.command()(cli_workflows.proxy)


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
        typer.Option(
            "--state",
            help="Incremental store (SQLite): re-runs read only new mail. One scan at a time "
            "per store: another one exits 75.",
        ),
    ] = None,
    pst_folder: Annotated[
        list[str] | None,
        typer.Option("--pst-folder", help="Only this folder of .pst/.ost files (repeatable)."),
    ] = None,
    pretty: PrettyOption = False,
) -> None:
    """Audit archived mail for past exposures and write an incident register.

    Exit status: 0 no incident at or above --fail-on; 1 incidents;
    2 a source or message could not be read, or a usage error, or the --state could not
    be saved (the register is still written);
    75 another scan is using the --state file: nothing was read, try again when it ends;
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
            pretty=pretty,
        ),
        [*sources, output, state, config_path] if redact else None,
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
    pretty: PrettyOption = False,
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


app.add_typer(cli_workflows.history_app, name="history")
app.command()(cli_workflows.learn)
app.command()(cli_workflows.keygen)
app.command()(cli_workflows.approve)


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


def main(*, ends_process: bool = False) -> None:
    """Run the command line. ``ends_process``: the process ends when it returns (the
    ``mailguard`` script, :mod:`mailguard.__main__`), see
    :func:`~mailguard.cli_options.interrupts_said`."""
    # A file name that is not UTF-8 reaches the reports as lone surrogates; a terminal's
    # strict UTF-8 stdout would raise on them (commands.common.UNENCODABLE).
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors=UNENCODABLE)
    with interrupts_said(ends_process=ends_process):
        app()
