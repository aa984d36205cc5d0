"""Whether a domain takes mail, asked of DNS: the ``dns`` service of rules that need it.

A lookup is a network round trip, so it is bounded three ways: each query gives up after
``timeout`` (at most 1 s), a message's lookups all together after ``deadline`` (or sooner,
when the decision's own deadline in :mod:`mailguard.deadline` comes first), and the
domains of one message are looked up at once on a small thread pool owned by the service.
Answers are cached for their TTL (negative answers for the SOA's negative TTL), in the
service object: two engines with two services never share a cache, and a test that builds
its own service starts cold.

What a server fails to answer (timeout, SERVFAIL, REFUSED) is :data:`UNKNOWN`: the rule
reports the check as incomplete, never a finding and never an error verdict. A lookup that
missed a message's deadline goes on in the background, within its own timeout, so the
next message to the same domain finds the answer cached.

With ``servers`` given, dnspython is built with ``configure=False``: only those servers are
asked and ``/etc/resolv.conf`` is not read (the tests use that to keep every query on
loopback). Without, the system's resolver configuration is used.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mailguard import configfile
from mailguard import deadline as deadline_mod
from mailguard.configfile import ConfigFile
from mailguard.errors import ConfigError


class Status(StrEnum):
    DELIVERABLE = "deliverable"
    NXDOMAIN = "nxdomain"
    """The name does not exist."""
    NULL_MX = "null-mx"
    """``MX 0 .`` (RFC 7505): the domain says it accepts no mail."""
    NO_MAIL = "no-mx-no-address"
    """The name exists but has no MX and no A/AAAA to fall back on (no implicit MX)."""
    UNKNOWN = "unknown"
    """No answer in time, SERVFAIL or REFUSED: nothing can be said."""


UNDELIVERABLE = frozenset({Status.NXDOMAIN, Status.NULL_MX, Status.NO_MAIL})

MAX_QUERY_TIMEOUT = 1.0
"""Seconds one query may take at most, whatever the config says."""
MAX_TTL = 3600.0
"""Answers are kept at most this long, whatever their TTL (a domain may start taking mail)."""
MAX_NEGATIVE_TTL = 900.0
"""Negative answers (NXDOMAIN, no data) at most this long (RFC 2308 suggests hours)."""
DEFAULT_NEGATIVE_TTL = 60.0
"""A negative answer without an SOA to say how long it holds."""

_no_waiting: ContextVar[bool] = ContextVar("mailguard_dns_no_waiting", default=False)


class WouldBlock(deadline_mod.DeadlineExceeded):
    """Raised under :func:`no_waiting` when an answer is not cached yet.

    A :class:`~mailguard.deadline.DeadlineExceeded`, so the engine stops the decision the
    way it stops one that ran out of time; the milter then decides again on a worker, where
    waiting is allowed. The lookups have been started by then.
    """


class no_waiting:  # lower case, like deadline.limit: used as ``with no_waiting():``
    """Lookups in this block never wait: the milter's event loop serves every connection.

    A class rather than ``@contextmanager``: the milter enters it once per message, and a
    generator costs several times more.
    """

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _no_waiting.set(True)

    def __exit__(self, *exc: object) -> None:
        _no_waiting.reset(self._token)


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """The ``[dns]`` table of ``mailguard.toml``."""

    enabled: bool = False
    """Off by default: a lookup is network traffic the operator should choose."""
    servers: tuple[str, ...] = ()
    """``HOST[:PORT]`` (``[v6]:PORT``): only these are asked; empty: the system's resolver."""
    timeout: float = MAX_QUERY_TIMEOUT
    """Seconds per query (at most 1)."""
    deadline: float = 1.5
    """Seconds for all of one message's lookups together."""


def from_file(file: ConfigFile) -> DnsSettings:
    """The ``[dns]`` section of a config file; the defaults if it has none."""
    return from_mapping(file.section("dns"), f"{file.where}: dns")


def from_mapping(data: Mapping[str, Any], where: str = "dns") -> DnsSettings:
    """Validate a ``[dns]`` table (strictly: a misspelt key is an error, not a no-op)."""
    data = configfile.fields_table(DnsSettings, data, where)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}"
        if key == "enabled":
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: expected true or false")
            kwargs[key] = value
        elif key == "servers":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{path}: expected a list of strings")
            for v in value:
                parse_server(v, path)
            kwargs[key] = tuple(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{path}: expected a number of seconds")
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{path}: expected a positive number of seconds")
            if key == "timeout" and value > MAX_QUERY_TIMEOUT:
                raise ConfigError(f"{path}: at most {MAX_QUERY_TIMEOUT:g} s per query")
            kwargs[key] = float(value)
    return DnsSettings(**kwargs)


def parse_server(text: str, where: str = "dns server") -> tuple[str, int]:
    """``HOST[:PORT]`` as an IP address and a port; a name is refused (who resolves it?)."""
    host, port = text.strip(), "53"
    if host.startswith("["):
        host, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"{where}: {text!r} is not HOST[:PORT]")
        port = rest[1:] or port
    elif host.count(":") == 1:
        host, port = host.split(":")
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not an IP address (HOST[:PORT])") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {text!r} has no valid port")
    return address, int(port)


@dataclass(frozen=True, slots=True)
class Lookup:
    """One domain's answer, as far as the service got."""

    status: Status
    detail: str = ""
    """For :data:`Status.UNKNOWN`: why (``timeout``, ``SERVFAIL``, ...)."""


@dataclass
class Lookups:
    """The answers for one message's domains."""

    results: dict[str, Lookup] = field(default_factory=dict)

    def with_status(self, *statuses: Status) -> list[str]:
        return [d for d, r in self.results.items() if r.status in statuses]

    @property
    def undeliverable(self) -> dict[str, Status]:
        return {d: r.status for d, r in self.results.items() if r.status in UNDELIVERABLE}

    @property
    def unknown(self) -> list[str]:
        return self.with_status(Status.UNKNOWN)


Resolve = Callable[[str, str, float], Any]
"""``(name, rdtype, lifetime) -> dns.resolver.Answer`` (dnspython's exceptions on failure)."""


class DnsService:
    """The ``dns`` service (:class:`mailguard.services.Services`): cached, bounded lookups.

    Thread-safe: the milter's workers and its event loop share one.
    """

    def __init__(
        self,
        servers: Iterable[str] = (),
        *,
        timeout: float = MAX_QUERY_TIMEOUT,
        deadline: float = 1.5,
        workers: int = 16,
        resolve: Resolve | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = min(timeout, MAX_QUERY_TIMEOUT)
        self.deadline = deadline
        self._clock = clock
        self._resolve = resolve or _dnspython(tuple(servers), self.timeout)
        self._cache: dict[str, tuple[Lookup, float]] = {}
        self._pending: dict[str, Future[tuple[Lookup, float]]] = {}
        self._lock = threading.RLock()  # a done future runs its callback at once
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mailguard-dns")

    @classmethod
    def from_settings(cls, settings: DnsSettings) -> DnsService:
        return cls(settings.servers, timeout=settings.timeout, deadline=settings.deadline)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def lookup(self, domains: Iterable[str]) -> Lookups:
        """Each domain's answer, within the deadline; what is not back by then is unknown."""
        now = self._clock()
        at = now + self.deadline
        left = deadline_mod.remaining()
        if left is not None:
            at = min(at, now + left * 0.8)  # leave the decision time to finish
        out = Lookups()
        waiting: dict[str, Future[tuple[Lookup, float]]] = {}
        with self._lock:
            for domain in dict.fromkeys(domains):
                hit = self._cache.get(domain)
                if hit is not None and hit[1] > now:
                    out.results[domain] = hit[0]
                    continue
                future = self._pending.get(domain)
                if future is None:
                    try:
                        future = self._pool.submit(self._answer, domain)
                    except RuntimeError:  # closed (a reload or shutdown under way)
                        out.results[domain] = Lookup(Status.UNKNOWN, "resolver closed")
                        continue
                    self._pending[domain] = future
                    future.add_done_callback(functools.partial(self._store, domain))
                waiting[domain] = future
        if not waiting:
            return out
        if _no_waiting.get():
            raise WouldBlock
        wait_all(waiting.values(), timeout=max(0.0, at - self._clock()))
        for domain, future in waiting.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                out.results[domain] = future.result()[0]
            else:
                out.results[domain] = Lookup(Status.UNKNOWN, "deadline")
        return out

    def records(
        self, queries: Iterable[tuple[str, str]], deadline: float | None = None
    ) -> dict[tuple[str, str], tuple[str, ...] | None]:
        """The data of each ``(name, rdtype)`` (``MX``: the hosts; ``TXT``: the strings
        joined), asked at once on the service's pool and bounded by ``deadline`` (default:
        the service's). ``()`` for no such name or no such record; ``None`` for no answer
        (timeout, SERVFAIL, the deadline). Not cached: a survey asks each name once.
        """
        at = self._clock() + (self.deadline if deadline is None else deadline)
        futures: dict[tuple[str, str], Future[tuple[str, ...] | None]] = {}
        for query in dict.fromkeys(queries):
            try:
                futures[query] = self._pool.submit(self._records, *query)
            except RuntimeError:  # closed
                break
        wait_all(futures.values(), timeout=max(0.0, at - self._clock()))
        out: dict[tuple[str, str], tuple[str, ...] | None] = dict.fromkeys(futures)
        for query, future in futures.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                out[query] = future.result()
            else:
                future.cancel()  # not started yet: never asked
        return out

    def _records(self, name: str, rdtype: str) -> tuple[str, ...] | None:
        import dns.exception
        import dns.resolver

        try:
            answer = self._resolve(name, rdtype, self.timeout)
        except dns.resolver.NXDOMAIN:
            return ()
        except (dns.exception.DNSException, OSError, ValueError):
            return None
        if answer.rrset is None:
            return ()
        if rdtype == "MX":
            return tuple(r.exchange.to_text().rstrip(".").lower() for r in answer.rrset)
        if rdtype == "TXT":
            return tuple(b"".join(r.strings).decode("ascii", "replace") for r in answer.rrset)
        return tuple(r.to_text() for r in answer.rrset)

    def _store(self, domain: str, future: Future[tuple[Lookup, float]]) -> None:
        with self._lock:
            self._pending.pop(domain, None)
            if future.cancelled() or future.exception() is not None:
                return
            result, ttl = future.result()
            if ttl > 0:
                self._cache[domain] = (result, self._clock() + ttl)

    def _answer(self, domain: str) -> tuple[Lookup, float]:
        """``domain``'s status and how long it may be cached (0: not at all)."""
        import dns.exception
        import dns.resolver

        try:
            mx = self._resolve(domain, "MX", self.timeout)
            if mx.rrset is not None:
                ttl = _ttl(mx.rrset.ttl, MAX_TTL)
                if all(r.exchange.to_text() == "." for r in mx.rrset):
                    return Lookup(Status.NULL_MX), ttl
                return Lookup(Status.DELIVERABLE), ttl
            negative = _negative_ttl(mx)
            for rdtype in ("A", "AAAA"):
                address = self._resolve(domain, rdtype, self.timeout)
                if address.rrset is not None:
                    return Lookup(Status.DELIVERABLE), _ttl(address.rrset.ttl, MAX_TTL)
                negative = min(negative, _negative_ttl(address))
            return Lookup(Status.NO_MAIL), negative
        except dns.resolver.NXDOMAIN as exc:
            return Lookup(Status.NXDOMAIN), _nxdomain_ttl(exc)
        except dns.resolver.NoNameservers:
            return Lookup(Status.UNKNOWN, "SERVFAIL or refused"), 0.0
        except dns.exception.Timeout:
            return Lookup(Status.UNKNOWN, "timeout"), 0.0
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            return Lookup(Status.UNKNOWN, type(exc).__name__), 0.0


def _ttl(seconds: float, cap: float) -> float:
    return float(max(1.0, min(float(seconds), cap)))


def _soa_ttl(response: Any) -> float:
    """RFC 2308: a negative answer holds for min(SOA TTL, SOA MINIMUM)."""
    for rrset in getattr(response, "authority", ()):
        if rrset.rdtype == 6:  # SOA
            return _ttl(min(rrset.ttl, rrset[0].minimum), MAX_NEGATIVE_TTL)
    return DEFAULT_NEGATIVE_TTL


def _negative_ttl(answer: Any) -> float:
    return _soa_ttl(getattr(answer, "response", None))


def _nxdomain_ttl(exc: Any) -> float:
    try:
        responses = exc.responses()
    except Exception:
        return DEFAULT_NEGATIVE_TTL
    return min((_soa_ttl(r) for r in responses.values()), default=DEFAULT_NEGATIVE_TTL)


def _dnspython(servers: tuple[str, ...], timeout: float) -> Resolve:
    """A dnspython resolver: only ``servers`` when given (``configure=False``)."""
    import dns.nameserver
    import dns.resolver

    if servers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(*parse_server(s)) for s in servers]  # type: ignore[assignment]
    else:
        try:
            resolver = dns.resolver.Resolver()
        except (dns.resolver.NoResolverConfiguration, OSError) as exc:
            raise ConfigError(
                f"DNS: the system's resolver configuration cannot be used ({type(exc).__name__}); "
                "name servers with --dns-server or [dns] servers"
            ) from None
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.cache = None  # the service caches whole answers per domain

    def resolve(name: str, rdtype: str, lifetime: float) -> Any:
        return resolver.resolve(
            name, rdtype, raise_on_no_answer=False, lifetime=lifetime, search=False
        )

    return resolve
