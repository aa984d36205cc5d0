"""Command line: a thin layer over the library (``mailguard.Engine``), no logic of its own.

Exit codes follow the linter convention: 0 nothing at or above ``--fail-on``, 1 something
is, 2 usage, configuration or input error (an unreadable message is never "clean").
"""

from __future__ import annotations

import enum
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from mailguard import __version__
from mailguard import config as config_mod
from mailguard.engine import Engine
from mailguard.errors import ConfigError
from mailguard.outputs import RenderOptions, render
from mailguard.recipients import Envelope
from mailguard.redact import Redactor
from mailguard.report import Report
from mailguard.rules import DOC_TITLES, REMEDIES, SEVERITIES, Rule, find_rule
from mailguard.scoring import EXIT_ERROR, exit_status
from mailguard.sources import iter_inputs

app = typer.Typer(
    name="mailguard",
    help="Catch emails that expose their recipients (To/Cc instead of Bcc) before they are sent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Config file (default: nearest mailguard.toml/pyproject)."),
]
NoConfigOption = Annotated[
    bool, typer.Option("--no-config", help="Ignore config files; use the defaults.")
]
InternalDomainOption = Annotated[
    list[str] | None,
    typer.Option("--internal-domain", help="Your organisation's domain; repeat. Overrides config."),
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
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """mailguard inspects email before it is sent and flags exposed recipient lists."""


def _fail(message: str) -> typer.Exit:
    typer.echo(f"mailguard: error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


def load_config(path: Path | None, no_config: bool, internal: list[str]) -> config_mod.Config:
    """Config file (given, discovered, or none), then CLI flags on top."""
    try:
        cfg = config_mod.Config() if no_config else config_mod.load(path)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if internal:
        cfg = cfg.with_overrides(internal_domains=tuple(internal))
    return cfg


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
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.text,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to this file.")
    ] = None,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 1 if any message is at or above this.")
    ] = FailOn.block,
    config_path: ConfigOption = None,
    no_config: NoConfigOption = False,
    internal_domain: InternalDomainOption = None,
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
) -> None:
    """Check messages before sending: exit 0 clean, 1 at/above --fail-on, 2 error."""
    cfg = load_config(config_path, no_config, internal_domain or [])
    envelope = Envelope(mail_from, tuple(rcpt_to or ())) if (mail_from or rcpt_to) else None
    engine = Engine(cfg)
    reports: list[Report] = []
    unread = False
    for item in iter_inputs(paths, pattern=glob, max_bytes=cfg.limits.max_message_bytes):
        if item.data is None and item.unreadable:  # an input error, not a message verdict
            typer.echo(f"mailguard: cannot read {item.source}: {item.error}", err=True)
            unread = True
            continue
        if item.data is None:
            reports.append(engine.error_report(item.source, item.error or "cannot read"))
            continue
        report = engine.check(
            item.data, envelope=envelope, source=item.source, smtp_data=smtp_data,
            mode=mode.value,
        )  # fmt: skip
        if not (show_addresses or redact):
            report.analysis = None  # keep memory flat over a large folder
        reports.append(report)
    options = RenderOptions(show_addresses or redact, Redactor() if redact else None)
    color = output is None and fmt is Format.text and sys.stdout.isatty()
    text = render(reports, fmt.value, options, color=color, rules=cfg.catalog)
    if output is not None:
        try:
            output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        except OSError as exc:
            raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
    else:
        typer.echo(text.rstrip("\n"))
    raise typer.Exit(EXIT_ERROR if unread else exit_code(reports, fail_on.value))


def exit_code(reports: list[Report], fail_on: str) -> int:
    return exit_status((r.verdict for r in reports), fail_on)


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
    import logging

    from mailguard.milter.server import ListenSpec, MilterServer, run

    try:
        spec = ListenSpec.parse(listen)
        perms = int(socket_mode, 8)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise _fail(f"unknown log level {log_level!r}")
    logging.basicConfig(
        level=level, format="%(asctime)s mailguard-milter[%(process)d] %(levelname)s %(message)s"
    )
    found = None if no_config else (config_path or config_mod.discover())

    def load() -> config_mod.Config:
        cfg = config_mod.load_file(found) if found else config_mod.Config()
        if internal_domain:
            cfg = cfg.with_overrides(internal_domains=tuple(internal_domain))
        if mode is not None:
            cfg = cfg.with_overrides(milter=replace(cfg.milter, mode=mode.value))
        return cfg

    try:
        cfg = load()
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    server = MilterServer(cfg, spec, socket_mode=perms, socket_group=socket_group, reload=load)
    try:
        run(server)
    except (OSError, ValueError, KeyError) as exc:
        raise _fail(f"cannot serve {listen}: {exc}") from None


class ScanFormat(enum.StrEnum):
    text = "text"
    json = "json"
    csv = "csv"
    html = "html"


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _fail(f"{option}: expected a date as YYYY-MM-DD, got {value!r}") from None


@app.command()
def scan(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="mbox files, Maildirs, folders of .eml files, .eml files, or IMAP folders "
            "(imaps://user@host[:port]/Folder; password from MAILGUARD_IMAP_PASSWORD)."
        ),
    ],
    fmt: Annotated[ScanFormat, typer.Option("--format", "-f", help="Output format.")] = (
        ScanFormat.text
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the register to this file.")
    ] = None,
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
    glob: Annotated[str, typer.Option("--glob", help="File pattern in .eml folders.")] = "*.eml",
) -> None:
    """Audit archived mail for past exposures and write an incident register.

    Exit status: 0 no incident at or above --fail-on, 1 incidents, 2 a source or message
    could not be read (or usage error), 130 interrupted (what was found is still written).
    """
    from mailguard.archive.command import run_scan

    window = (_day(since, "--since"), _day(until, "--until"))
    if window[0] and window[1] and window[0] > window[1]:
        raise _fail("--since is after --until: no message could match")
    if jobs is not None and jobs < 1:
        raise _fail("--jobs must be at least 1")
    cfg = load_config(config_path, no_config, internal_domain or [])
    code = run_scan(
        sources, cfg, fmt=fmt.value, output=output, jobs=jobs, since=window[0],
        until=window[1], redact=redact, show_addresses=show_addresses,
        fail_on=fail_on.value, pattern=glob,
    )  # fmt: skip
    raise typer.Exit(code)


@app.command("rules")
def list_rules(config_path: ConfigOption = None, no_config: NoConfigOption = False) -> None:
    """List every rule: code, name, severity, weight and summary."""
    for rule in load_config(config_path, no_config, []).catalog:
        typer.echo(
            f"{rule.code}  {rule.name:<32} {rule.severity:<8} {rule.weight:>3}  {rule.summary}"
        )


@app.command()
def explain(
    code: Annotated[str, typer.Argument(help="Rule code, name or alias.")],
    config_path: ConfigOption = None,
    no_config: NoConfigOption = False,
) -> None:
    """Print a rule's documentation, options and examples."""
    try:
        rule = find_rule(code, load_config(config_path, no_config, []).catalog)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    typer.echo(explain_text(rule))


def explain_text(rule: Rule) -> str:
    lines = [f"{rule.code} {rule.name} ({rule.severity}, weight {rule.weight})", "", rule.summary]
    if rule.aliases:
        lines += ["", "Also known as: " + ", ".join(rule.aliases)]
    for key, title in DOC_TITLES.items():
        lines += ["", title, "-" * len(title), rule.doc[key]]
    lines += ["", "Options", "-------"]
    if rule.options:
        for opt in rule.options.values():
            lines.append(f"{opt.name} ({opt.type}, default {opt.default!r}): {opt.doc}")
    lines.append(
        f"Every rule also takes: enabled (bool), severity ({'/'.join(SEVERITIES)}), weight (0-100)."
    )
    lines += ["", f"Configure in mailguard.toml as [rules.{rule.code}] or [rules.{rule.name}]."]
    if set(rule.modes) != {"outgoing", "archived"}:
        lines.append(f"Applies to {' and '.join(rule.modes)} mail only.")
    lines.append(f"Reads: {', '.join(rule.reads)}. Needs: {', '.join(rule.needs) or 'no service'}.")
    cure = f"{rule.remedy} ({REMEDIES[rule.remedy]})" if rule.remedy else "none"
    lines.append(f"Remedy: {cure}.")
    return "\n".join(lines)


def main() -> None:
    app()
