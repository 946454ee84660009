"""Sign-in limits: atomic under concurrency, per account and client, bounded in memory."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
import uvicorn

from review_opt_out.app import create_app
from review_opt_out.auth import add_member
from review_opt_out.registry import Registry
from review_opt_out.signin_guard import Refusal, SignInGuard, SignInLimits, Ticket
from tests.broker import free_port
from tests.review_helpers import open_both


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(guard: SignInGuard, account: str, client: str) -> Ticket | Refusal:
    ticket = guard.admit(account, client)
    if isinstance(ticket, Ticket):
        guard.settle(ticket, succeeded=False)
    return ticket


def test_each_limit_refuses_by_its_own_scope_and_the_window_forgives() -> None:
    clock = Clock()
    limits = SignInLimits(per_account_and_client=3, per_client=5, per_account=7, window_seconds=60)
    guard = SignInGuard(limits, clock)
    for _ in range(3):
        assert isinstance(fail(guard, "ana", "1.1.1.1"), Ticket)
    refused = guard.admit("ana", "1.1.1.1")
    assert refused == Refusal(60, "account_and_client")
    # Another account from the same client: allowed until the client's own limit.
    assert isinstance(fail(guard, "bo", "1.1.1.1"), Ticket)
    assert isinstance(fail(guard, "cy", "1.1.1.1"), Ticket)
    assert guard.admit("dee", "1.1.1.1") == Refusal(60, "client")
    # Ana from many clients: the per-account limit (7) counts the 3 above.
    for n in range(4):
        assert isinstance(fail(guard, "ana", f"2.2.2.{n}"), Ticket)
    assert isinstance(guard.admit("ana", "3.3.3.3"), Refusal)
    clock.now += 30
    assert guard.admit("ana", "3.3.3.3") == Refusal(30, "account")
    clock.now += 31
    assert isinstance(guard.admit("ana", "1.1.1.1"), Ticket)


def test_checks_under_way_count_against_the_limit() -> None:
    guard = SignInGuard(SignInLimits(per_account_and_client=2))
    first, second = guard.admit("ana", "c"), guard.admit("ana", "c")
    assert isinstance(first, Ticket) and isinstance(second, Ticket)
    assert isinstance(guard.admit("ana", "c"), Refusal)  # two checks running fill it
    guard.settle(first, succeeded=True)  # a right password clears the pair's failures
    guard.settle(second, succeeded=False)
    assert isinstance(guard.admit("ana", "c"), Ticket)


def test_memory_is_bounded_and_checks_under_way_are_never_forgotten() -> None:
    guard = SignInGuard(SignInLimits(max_keys=30, per_account_and_client=1))
    held = guard.admit("ana", "home")
    assert isinstance(held, Ticket)
    for n in range(1000):
        fail(guard, f"spray{n}", f"10.0.{n // 250}.{n % 250}")
    assert guard.tracked_keys() <= 30
    assert isinstance(guard.admit("ana", "home"), Refusal)  # still counted: its check is under way
    guard.settle(held, succeeded=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Registry, Callable[[], None]]]:
    _store, registry = open_both(tmp_path)
    registry.create_household("h1", "The Parks")
    add_member(registry, "h1", "ana@example.org", "Ana", "correct horse")
    port = free_port()
    app = create_app(registry)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    yield f"http://127.0.0.1:{port}", registry, stop
    stop()


def test_sixty_concurrent_wrong_passwords_get_only_five_checks(
    server: tuple[str, Registry, Callable[[], None]],
) -> None:
    url, registry, stop = server
    start = threading.Barrier(60)

    def guess(n: int) -> int:
        with httpx2.Client(base_url=url) as http:
            start.wait()
            return http.post("/api/login", json={"login": "ana@example.org", "password": f"guess {n}"}).status_code

    with ThreadPoolExecutor(60) as pool:
        codes = Counter(pool.map(guess, range(60)))
    assert codes == {401: 5, 429: 55}
    with httpx2.Client(base_url=url) as http:
        locked = http.post("/api/login", json={"login": "ana@example.org", "password": "correct horse"})
    assert locked.status_code == 429 and "try again in 15 minutes" in locked.json()["detail"]
    failed = "SELECT detail FROM audit_log WHERE action = 'member.sign_in_failed'"
    assert registry.db.execute(failed).fetchall() == []  # written at most once a minute, not per guess
    stop()  # ... and at shutdown
    assert [json.loads(d) for (d,) in registry.db.execute(failed)] == [{"wrong_password": 5, "refused": 56}]


def test_refused_requests_create_no_counters_so_they_cannot_push_real_ones_out() -> None:
    guard = SignInGuard(SignInLimits(max_keys=30, per_account_and_client=3, per_client=3))
    for _ in range(3):
        fail(guard, "ana", "198.51.100.7")
    kept = guard.tracked_keys()
    # The locked-out address sprays made-up logins: every one is refused and nothing is stored.
    for n in range(1000):
        assert isinstance(guard.admit(f"made-up-{n}", "198.51.100.7"), Refusal)
    assert guard.tracked_keys() == kept
    assert isinstance(guard.admit("ana", "198.51.100.7"), Refusal)  # still remembered


def test_idle_counters_that_remember_nothing_are_forgotten_first() -> None:
    clock = Clock()
    guard = SignInGuard(SignInLimits(max_keys=12, per_account_and_client=2, window_seconds=60), clock)
    fail(guard, "ana", "203.0.113.1")
    fail(guard, "ana", "203.0.113.1")
    # Sixty new counters (twenty people signing in fine) in a table of twelve.
    for n in range(20):
        ticket = guard.admit(f"user{n}", f"192.0.2.{n}")
        assert isinstance(ticket, Ticket)
        guard.settle(ticket, succeeded=True)
    assert isinstance(guard.admit("ana", "203.0.113.1"), Refusal)  # her guesses are still remembered


def test_an_ipv6_host_is_counted_by_its_slash_64() -> None:
    guard = SignInGuard(SignInLimits(per_account_and_client=2))
    fail(guard, "ana", "2001:db8:1:2::1")
    fail(guard, "ana", "2001:db8:1:2::ffff")
    assert isinstance(guard.admit("ana", "2001:db8:1:2:abcd::9"), Refusal)
    assert isinstance(guard.admit("ana", "2001:db8:1:3::1"), Ticket)
