"""The one settings loader of every command (``check``, ``scan``, ``milter`` and its reload).

The config file is read once per load by :mod:`mailguard.configfile` and each section goes
to its owner: the decision settings to :mod:`mailguard.config`, ``[milter]`` to
:mod:`mailguard.milter.settings`. Every section is validated whichever command runs, so a
typo in ``[milter]`` fails ``mailguard check`` too instead of waiting for the mail server's
next restart. Command-line flags (``--internal-domain``, ``--mode``) go on top.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from mailguard import approval_keys, configfile, resolver
from mailguard import config as config_mod
from mailguard.approval_keys import Keyring
from mailguard.commands import CommandError
from mailguard.config import Config
from mailguard.configfile import ConfigFile
from mailguard.history import settings as history_settings
from mailguard.history.keys import HistoryError
from mailguard.history.settings import HistorySettings
from mailguard.milter import settings as milter_settings
from mailguard.milter.settings import MilterSettings
from mailguard.proxy import settings as proxy_settings
from mailguard.proxy.settings import ProxySettings
from mailguard.resolver import DnsService, DnsSettings
from mailguard.services import Services


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the config file says, each part validated by its owner."""

    config: Config
    """What changes a decision (``mailguard.Config``)."""
    milter: MilterSettings
    """What ``mailguard milter`` does with a decision."""
    dns: DnsSettings = field(default_factory=DnsSettings)
    """``[dns]`` with ``--dns``/``--dns-server`` applied."""
    approval: Keyring = field(default_factory=Keyring)
    """The keys of ``[approval] keys``, read and checked (mode 0600) at every load."""
    proxy: ProxySettings = field(default_factory=ProxySettings)
    """``[proxy]``: what ``mailguard proxy`` does with a decision, and where it relays."""
    history: HistorySettings = field(default_factory=HistorySettings)
    """``[history]`` with ``--history`` applied."""

    @property
    def approval_keys(self) -> Keyring | None:
        """The approval service: ``None`` when no key is configured."""
        return self.approval if len(self.approval) else None

    def services(self) -> Services:
        """The engine's services: a DNS resolver only when DNS is enabled (off by default),
        the approval keys when configured, and the history store when one is named (opened
        now: a store that cannot be used is an error at start, exit status 2, never a
        failure in the middle of the mail)."""
        dns = DnsService.from_settings(self.dns) if self.dns.enabled else None
        history = None
        if self.history.store is not None:
            from mailguard.history.service import HistoryService

            try:
                history = HistoryService.open(self.history)
            except HistoryError as exc:
                raise CommandError(str(exc)) from None
        return Services(dns=dns, approval=self.approval_keys, history=history)


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """Where a command's settings come from: the config options every command shares."""

    path: Path | None = None
    """``--config``: this file; otherwise the nearest one from the current directory up."""
    no_config: bool = False
    """``--no-config``: the defaults, whatever files lie around."""
    internal_domains: tuple[str, ...] = ()
    """``--internal-domain``: replaces the file's ``internal_domains`` when given."""
    milter_mode: str | None = None
    """``mailguard milter --mode``: replaces the file's ``[milter] mode`` when given."""
    dns: bool | None = None
    """``--dns``: True turns lookups on; False keeps them off whatever the file says
    (``scan`` without ``--dns``); None: the file's ``[dns] enabled``."""
    dns_servers: tuple[str, ...] = ()
    """``--dns-server``: replaces the file's ``[dns] servers`` when given."""
    history: str | None = None
    """``--history``: the history store, replacing the file's ``[history] store``."""

    def locate(self) -> Path | None:
        """The file to read, found now (a reload reads the same file again)."""
        return None if self.no_config else configfile.locate(self.path)

    def load(self, found: Path | None = None) -> Settings:
        """Read ``found`` (``None``: the defaults), validate every section, apply the flags."""
        file = configfile.read(found) if found else ConfigFile()
        config = config_mod.from_file(file)
        milter = milter_settings.from_file(file)
        dns = resolver.from_file(file)
        proxy = proxy_settings.from_file(file)
        history = history_settings.from_file(file)
        if self.history is not None:
            history = replace(history, store=self.history)
        keys = approval_keys.from_file(file)[1]
        if self.internal_domains:
            config = config.with_overrides(internal_domains=self.internal_domains)
        if self.milter_mode is not None:
            milter = replace(milter, mode=self.milter_mode)
        if self.dns_servers:
            for server in self.dns_servers:
                resolver.parse_server(server, "--dns-server")
            dns = replace(dns, servers=self.dns_servers)
        if self.dns is not None:
            dns = replace(dns, enabled=self.dns)
        return Settings(config, milter, dns, approval=keys, proxy=proxy, history=history)

    def loader(self) -> Callable[[], Settings]:
        """Locate the file once; each call reads it again (the milter's SIGHUP reload)."""
        found = self.locate()
        return lambda: self.load(found)


def load_settings(source: ConfigSource | None = None) -> Settings:
    """The settings a command runs with, from ``source`` (default: the nearest file)."""
    source = source or ConfigSource()
    return source.load(source.locate())
