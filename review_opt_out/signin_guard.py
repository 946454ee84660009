"""Limits on password guessing that hold under concurrency and in bounded memory.

Three counters of wrong passwords, each over a sliding window:

* per account *and* client: a stranger's guesses lock only the stranger out, not the
  member signing in from home;
* per client, over every account: one address trying many accounts;
* per account, over every client: guessing spread over many addresses. This one is set
  high on purpose, since reaching it does lock the real member out for the window.

Admission is atomic: a sign-in takes a slot in every counter *before* its password is
checked, under one lock, so sixty simultaneous guesses cannot all slip past a check that
counted none of them yet. Memory is bounded twice over: at most `max_keys` counters (the
least recently used idle one is forgotten first), and at most `max_concurrent_checks`
argon2 verifications at once, so the hash's memory cost times that figure caps what
guessing can make the server allocate.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Checker(Protocol):
    """Runs argon2 work somewhere and returns its result (SignInGuard.check)."""

    def __call__(self, work: Callable[[], T]) -> T:
        """The result of `work()`."""


class SignInLimits(BaseModel):
    """How much guessing is tolerated; the defaults suit a household's companion app."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_seconds: float = Field(900.0, gt=0)
    per_account_and_client: int = Field(5, ge=1)
    per_client: int = Field(20, ge=1)
    per_account: int = Field(50, ge=1)
    max_keys: int = Field(20_000, ge=10)
    max_concurrent_checks: int = Field(2, ge=1)


@dataclass
class _Counter:
    """Wrong-password times in the window (at most `limit` kept) plus checks under way."""

    limit: int
    failures: list[float] = field(default_factory=list)
    in_flight: int = 0

    def prune(self, cutoff: float) -> None:
        self.failures = [t for t in self.failures if t > cutoff]

    def full(self) -> bool:
        return len(self.failures) + self.in_flight >= self.limit


@dataclass(frozen=True)
class Ticket:
    """A sign-in admitted for one password check; settle it with `SignInGuard.settle`."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class Refusal:
    """Too many wrong passwords: when to try again, and which limit said no."""

    retry_after_seconds: int
    scope: str  # "account_and_client", "client" or "account"


def _client_key(address: str) -> str:
    """An IPv4 address as is; an IPv6 one by its /64, which one household or host is given whole."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class SignInGuard:
    """Atomic admission, settlement, and the argon2 concurrency gate."""

    def __init__(self, limits: SignInLimits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or SignInLimits()
        self._clock = clock
        self._counters: OrderedDict[str, _Counter] = OrderedDict()
        self._lock = threading.Lock()
        self._checker = ThreadPoolExecutor(self.limits.max_concurrent_checks, thread_name_prefix="argon2")

    def _scoped(self, account: str, client: str) -> list[tuple[str, str, int]]:
        limits = self.limits
        client = _client_key(client)
        return [
            ("account_and_client", f"ac:{account}\0{client}", limits.per_account_and_client),
            ("client", f"c:{client}", limits.per_client),
            ("account", f"a:{account}", limits.per_account),
        ]

    def _take(self, key: str, limit: int) -> None:
        """A slot in this counter (made if new); counted before any eviction can see it."""
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = _Counter(limit)
        counter.in_flight += 1
        self._counters.move_to_end(key)
        self._evict()

    def _evict(self) -> None:
        # Counters with nothing left in the window go first, then the oldest; never one
        # with a check under way (its ticket still points at it). Forgetting a counter
        # early only ever forgives guesses, so the ones that remember nothing go first.
        excess = len(self._counters) - self.limits.max_keys
        if excess <= 0:
            return
        cutoff = self._clock() - self.limits.window_seconds
        idle = [k for k, c in self._counters.items() if c.in_flight == 0]
        forgettable = [k for k in idle if not self._counters[k].failures or self._counters[k].failures[-1] <= cutoff]
        remembering = [k for k in idle if k not in set(forgettable)]
        for key in [*forgettable, *remembering][:excess]:
            del self._counters[key]

    def admit(self, account: str, client: str) -> Ticket | Refusal:
        """Take a slot in every counter, or say which one is full and for how long."""
        with self._lock:
            now = self._clock()
            cutoff = now - self.limits.window_seconds
            # Refusals create nothing: otherwise cheap refused requests with made-up logins
            # would fill the table and push real counters out.
            for scope, key, _limit in self._scoped(account, client):
                counter = self._counters.get(key)
                if counter is None:
                    continue
                counter.prune(cutoff)
                if counter.full():
                    oldest = counter.failures[0] if counter.failures else now
                    wait = max(oldest + self.limits.window_seconds - now, 1.0)
                    return Refusal(math.ceil(wait), scope)
            scoped = self._scoped(account, client)
            for _scope, key, limit in scoped:
                self._take(key, limit)
            return Ticket(tuple(key for _scope, key, _limit in scoped))

    def settle(self, ticket: Ticket, succeeded: bool, *, clear: bool = True) -> None:
        """Release the slots; a wrong password stays counted, a right one clears its pair
        (unless `clear` is False: it then counts as neither)."""
        with self._lock:
            now = self._clock()
            for key in ticket.keys:
                counter = self._counters[key]  # never evicted while a check is under way
                counter.in_flight -= 1
                if not succeeded:
                    counter.failures.append(now)
                    del counter.failures[: -counter.limit]
            if succeeded and clear:
                self._counters[ticket.keys[0]].failures.clear()

    def check(self, work: Callable[[], T]) -> T:
        """Run a password hash or check on one of the few argon2 threads and wait for it.

        Dedicated threads rather than a semaphore: glibc gives each thread that mallocs a
        hash's memory its own arena and keeps it, so checks spread over a web server's 40
        threads held ~330 MB after one burst of guesses (`scripts/bench_signin.py`).
        """
        return self._checker.submit(work).result()

    def tracked_keys(self) -> int:
        """How many counters are held (for tests and the benchmark)."""
        with self._lock:
            return len(self._counters)
