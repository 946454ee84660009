"""The companion app in a real headless Chromium (Debian's, driven by Playwright), against a
live server, a real mosquitto, and the real consent publisher."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import paho.mqtt.client as mqtt
import pytest
import uvicorn
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from contract.mqtt import MqttSettings
from pipeline.store import SqlClipStore
from review_opt_out import https_port, members, tls
from review_opt_out.app import create_app
from review_opt_out.auth import add_member, hash_password
from review_opt_out.publisher import ConsentPublisher
from review_opt_out.registry import Channel, RecordingFilter, Registry
from tests.broker import Broker, free_port
from tests.review_helpers import capture, open_both

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def retained_consent(broker: Broker, household: str, want_version: int, timeout: float = 10) -> dict[str, Any]:
    """The retained consent message on the broker, once it reaches `want_version`."""
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []

    def keep(_client: Any, _userdata: Any, message: Any) -> None:
        envelope = json.loads(message.payload)  # a SignedConsent: the state travels as the signed text
        assert envelope["type"] == "signed_consent", "an unsigned consent message reached the broker"
        got.append(json.loads(envelope["state"]))

    while time.monotonic() < deadline:
        got.clear()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_message = keep
        client.connect("127.0.0.1", broker.port)
        client.subscribe(topics.consent(household), qos=1)
        client.loop_start()
        time.sleep(0.3)
        client.loop_stop()
        client.disconnect()
        if got and got[-1]["consent_version"] >= want_version:
            return got[-1]
    raise AssertionError(f"no retained consent v{want_version} on the broker")


@dataclass
class Live:
    """A running companion app on a real broker, and what the tests need to reach behind it."""

    url: str
    registry: Registry
    store: SqlClipStore
    broker: Broker
    clip: Any


@contextlib.contextmanager
def serving(tmp_path: Path, database: str | None = None, https: bool = False) -> Iterator[Live]:
    """The app on a real broker, over plain HTTP or over HTTPS as `earmark review serve` runs it."""
    broker = Broker(tmp_path)
    broker.start()
    store, registry = open_both(tmp_path / "data", database)
    registry.create_household("h1", "The Parks")
    add_member(registry, "h1", "ana@example.org", "Ana", "correct horse")
    registry.add_reviewer("rita", hash_password("reviewer pw"))
    version = registry.set_consent("h1", True, "ana", Channel.APP).consent_version
    clip = capture(store, "h1", True, version)
    assert registry.sample(1.0) == 1
    publisher = ConsentPublisher(registry, MqttSettings(port=broker.port))
    publisher.start()
    port = free_port()
    scheme = "https" if https else "http"
    # The address others on the network would use: another name for this machine, so the
    # invited guest's browser can open the link the owner is given.
    app = create_app(registry, publisher.notify, secure_cookies=https, share_url=f"{scheme}://localhost:{port}/")
    http: Any = "auto"
    if https:
        cert, key, _ = tls.create_certificate(tmp_path / "data", ["localhost", "127.0.0.1"])
        http = https_port.protocol_class(https_port.server_context(cert, key), ["localhost", "127.0.0.1"], port)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", http=http))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield Live(f"{scheme}://127.0.0.1:{port}", registry, store, broker, clip)
    server.should_exit = True
    thread.join(timeout=10)
    publisher.stop()
    broker.stop()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with serving(tmp_path) as running:
        yield running


@pytest.fixture
def live_https(tmp_path: Path, database: str | None) -> Iterator[Live]:
    with serving(tmp_path, database, https=True) as running:
        yield running


PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(
    browser: Any, url: str, viewport: dict[str, int], permissions: tuple[str, ...] = ()
) -> tuple[Any, list[str]]:
    """A fresh browser context (its own cookies) on `url`; returns the page and its console lines.

    The app's certificate is self-signed, as `earmark review setup` makes it: the person
    accepts it once in their browser; here the context does."""
    context = browser.new_context(viewport=viewport, permissions=list(permissions), ignore_https_errors=True)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(url)
    return page, console


def sign_in_page(page: Any, email: str, password: str) -> None:
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def check_screenshot(page: Any, path: Path, viewport: dict[str, int]) -> None:
    """Nothing wider than the screen (no sideways scrolling on a phone), and a real picture."""
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    page.screenshot(path=str(path), full_page=True)
    with path.open("rb") as png:
        header = png.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(header[16:20], "big") == viewport["width"]


def test_switching_review_off_in_the_browser(live: Live, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, registry, broker = live.url, live.registry, live.broker
    assert retained_consent(broker, "h1", 2)["review_allowed"] is True

    reviewer = httpx2.Client(base_url=url)
    request_cleanup = reviewer.close
    reviewer.post("/api/review/login", json={"login": "rita", "password": "reviewer pw"}).raise_for_status()
    pseudonym = reviewer.get("/api/review/next").json()["clip"]
    assert pseudonym is not None
    assert reviewer.get(f"/api/review/clips/{pseudonym}/audio").status_code == 200

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone-sized screen
        page.goto(url)
        sign_in_page(page, "ana@example.org", "correct horse")
        toggle = page.get_by_role("switch", name="Let people review my recordings")
        expect(toggle).to_be_checked()
        expect(page.locator("#history tr")).to_have_count(2)
        # The reviewer above was sent the clip's audio: the household sees that a person heard
        # it, when, and under a pseudonym of its own, never the reviewer's name.
        expect(page.locator("#heard-summary")).to_have_text("1 of your 1 recording was heard by a reviewer.")
        heard_line = page.locator("#recordings li .heard")
        expect(heard_line).to_contain_text("Heard by a person: Reviewer ")
        assert "rita" not in page.content()
        page.get_by_label("Only those a person heard").check()
        expect(page.locator("#recordings-summary")).to_have_text("1 recording (heard by a person)")
        page.get_by_label("Only those a person heard").uncheck()
        page.screenshot(path=str(tmp_path / "before.png"), full_page=True)

        toggle.click()  # one tap
        expect(page.locator("#heard-summary")).to_contain_text("None since you turned review off on")

        expect(toggle).not_to_be_checked()
        expect(page.locator("#review-status")).to_contain_text("nobody reviews your recordings")
        expect(page.locator("#history tr")).to_have_count(3)
        expect(page.locator("#history tr").first).to_contain_text("Review off")
        expect(page.locator("#history tr").first).to_contain_text("Ana, in the app")
        page.screenshot(path=str(tmp_path / "after.png"), full_page=True)
        # "Don't keep my recordings": asked first (it deletes what is kept), then the page
        # says what happens to requests from now on.
        page.get_by_role("switch", name="Don't keep my recordings at all").click()
        expect(page.locator("#confirm-text")).to_contain_text("Stop keeping your recordings")
        page.locator("#confirm-ok").click()
        expect(page.locator("#keep-note")).to_be_visible()
        expect(page.locator("#keep-note")).to_contain_text("deletes each request within a minute")
        browser.close()

    assert registry.household("h1").review_allowed is False
    message = retained_consent(broker, "h1", 3)
    assert (message["review_allowed"], message["consent_version"]) == (False, 3)
    # The clip that was in the pool is gone from the reviewer's queue, and its URL refuses.
    assert reviewer.get("/api/review/next").json() == {"clip": None, "transcript": None}
    assert reviewer.get(f"/api/review/clips/{pseudonym}/audio").status_code == 404
    request_cleanup()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_a_locked_out_member_is_told_so_not_that_the_password_is_wrong(
    live: Live, tmp_path: Path, viewport: dict[str, int]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url = live.url
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport=viewport)
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.goto(url)
        error = page.locator("#signin-error")
        page.get_by_label("Email", exact=True).fill("ana@example.org")
        for attempt in range(5):
            page.get_by_label("Password", exact=True).fill(f"guess {attempt}")
            # Each guess is answered before the next: the error text alone would already match.
            with page.expect_response("**/api/login") as answered:
                page.get_by_role("button", name="Sign in").click()
            assert answered.value.status == 401
            expect(error).to_have_text("Wrong email or password.")
        page.get_by_label("Password", exact=True).fill("correct horse")
        page.get_by_role("button", name="Sign in").click()
        expect(error).to_have_text(
            "Too many wrong passwords for this account from this device. Sign-in is paused; try again in 15 minutes."
        )
        expect(page.locator("#app")).to_be_hidden()
        check_screenshot(page, tmp_path / "locked.png", viewport)
        browser.close()
    # The page's own script and style load under the CSP: nothing was blocked.
    assert not [line for line in console if "Content Security Policy" in line]


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_recordings_in_pages_filtered_by_speaker_and_deleted_only_after_a_count(
    live: Live, tmp_path: Path, viewport: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    live.store.enroll("hall-2", "h1")
    live.store.enroll("kitchen-1", "h1")
    version = live.registry.household("h1").consent_version
    for n in range(1, 25):  # 24 more, a day apart: two pages with the fixture's one
        capture(live.store, "h1", n % 2 == 0, version, age_days=n, device_id="hall-2" if n % 4 == 0 else "kitchen-1")
    with chromium() as browser:
        page, console = open_page(browser, live.url, viewport)
        sign_in_page(page, "ana@example.org", "correct horse")
        summary = page.locator("#recordings-summary")
        expect(summary).to_have_text("25 recordings")
        items = page.locator("#recordings li")
        expect(items).to_have_count(20)
        expect(page.locator("#page-label")).to_have_text("Page 1 of 2")
        # Which speaker heard it, and whether it may be reviewed, on every recording.
        expect(items.nth(0).locator(".meta")).to_contain_text("on speaker dev-h1")
        expect(items.nth(0).locator(".badge")).to_have_text("May be reviewed")
        expect(items.nth(1).locator(".badge")).to_have_text("Not for review")
        check_screenshot(page, tmp_path / "recordings.png", viewport)
        page.get_by_role("button", name="Older").click()
        expect(page.locator("#page-label")).to_have_text("Page 2 of 2")
        expect(items).to_have_count(5)
        page.get_by_role("button", name="Newer").click()
        expect(items).to_have_count(20)

        # Dates: from the day before yesterday (local), i.e. the recordings 0, 1 and 2 days old.
        from datetime import date, timedelta

        page.get_by_label("From").fill((date.today() - timedelta(days=2)).isoformat())
        expect(summary).to_contain_text("3 recordings (from ")
        expect(items).to_have_count(3)
        page.get_by_label("From").fill("")
        expect(summary).to_have_text("25 recordings")

        page.get_by_label("Speaker", exact=True).select_option("hall-2")
        expect(summary).to_have_text("6 recordings (on speaker hall-2)")
        expect(page.locator("#page-label")).to_have_text("Page 1 of 1")
        # Delete the filtered six: the dialog gives the count; Cancel deletes nothing.
        page.get_by_role("button", name="Delete the recordings shown by this filter").click()
        dialog = page.locator("#confirm")
        expect(dialog).to_be_visible()
        expect(page.locator("#confirm-text")).to_have_text(
            "Delete 6 recordings (on speaker hall-2)? This cannot be undone."
        )
        check_screenshot(page, tmp_path / "confirm.png", viewport)
        page.get_by_role("button", name="Cancel").click()
        expect(dialog).to_be_hidden()
        assert live.registry.count_recordings("h1", RecordingFilter(device_id="hall-2")) == 6
        page.get_by_role("button", name="Delete the recordings shown by this filter").click()
        page.locator("#confirm-ok").click()
        expect(summary).to_have_text("Deleted 6 recordings. No recordings.")
        assert live.registry.count_recordings("h1", RecordingFilter(device_id="hall-2")) == 0

        page.get_by_label("Speaker", exact=True).select_option("")
        expect(summary).to_have_text("19 recordings")
        first = items.nth(0)
        first.get_by_role("button", name="Delete").click()
        expect(page.locator("#confirm-text")).to_contain_text("Delete this recording from")
        page.locator("#confirm-ok").click()
        expect(summary).to_have_text("18 recordings")
        page.get_by_role("button", name="Delete all my recordings").click()
        expect(page.locator("#confirm-text")).to_have_text("Delete 18 recordings — all of them? This cannot be undone.")
        page.locator("#confirm-ok").click()
        expect(summary).to_have_text("Deleted 18 recordings. No recordings.")
    assert live.registry.count_recordings("h1", RecordingFilter()) == 0
    assert not [line for line in console if "Content Security Policy" in line]


def test_dont_keep_asks_first_with_the_count_and_cancel_keeps_everything(live: Live) -> None:
    from playwright.sync_api import expect

    version = live.registry.household("h1").consent_version
    for n in range(1, 9):  # 8 more beside the fixture's one
        capture(live.store, "h1", False, version, age_days=n)
    with chromium() as browser:
        page, _ = open_page(browser, live.url, PHONE)
        sign_in_page(page, "ana@example.org", "correct horse")
        expect(page.locator("#recordings-summary")).to_have_text("9 recordings")
        switch = page.get_by_role("switch", name="Don't keep my recordings at all")
        switch.click()
        expect(page.locator("#confirm-text")).to_have_text(
            "Stop keeping your recordings and delete the 9 recordings kept so far? This cannot be undone."
        )
        page.get_by_role("button", name="Cancel").click()
        expect(switch).not_to_be_checked()
        assert live.registry.household("h1").keep_recordings, "cancelled: nothing changed"
        switch.click()
        page.locator("#confirm-ok").click()
        expect(page.locator("#keep-note")).to_be_visible()
        assert not live.registry.household("h1").keep_recordings


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_an_owner_invites_a_member_who_joins_and_is_then_removed(
    live: Live, tmp_path: Path, viewport: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    with chromium() as browser:
        owner, _ = open_page(browser, live.url, viewport, ("clipboard-read", "clipboard-write"))
        sign_in_page(owner, "ana@example.org", "correct horse")
        owner.get_by_label("Their name").fill("Cy")
        owner.get_by_label("Their email").fill("cy@example.org")
        owner.get_by_role("button", name="Create invitation link").click()
        link = owner.locator("#invite-link")
        # Opened at 127.0.0.1, the link still names the address others open the app at.
        network_url = live.url.replace("127.0.0.1", "localhost")
        expect(link).to_contain_text(f"{network_url}/#invite=")
        expect(owner.get_by_label("Their name")).to_have_value("")  # ready for the next one
        expect(owner.get_by_label("Their email")).to_have_value("")
        owner.get_by_role("button", name="Copy link").click()
        expect(owner.locator("#invite-copied")).to_have_text("Copied.")
        assert owner.evaluate("navigator.clipboard.readText()") == link.inner_text()
        expect(owner.locator("#members li")).to_have_count(2)
        invited = owner.locator("#members li").nth(1)
        expect(invited.locator("span")).to_have_text("Cy <cy@example.org> · invited")
        expect(invited.get_by_role("button", name="Withdraw")).to_be_visible()
        check_screenshot(owner, tmp_path / "invite.png", viewport)

        guest, _ = open_page(browser, link.inner_text(), viewport)
        expect(guest.locator("#join-household")).to_have_text("The Parks")
        guest.get_by_label("New password", exact=True).fill("short")
        guest.get_by_role("button", name="Join and sign in").click()
        guest.get_by_label("New password", exact=True).fill("cy's own password")
        guest.get_by_role("button", name="Join and sign in").click()
        expect(guest.locator("#whoami")).to_have_text("The Parks · signed in")
        expect(guest.locator("#invite-form")).to_be_hidden()  # a member does not invite
        expect(guest.get_by_role("button", name="Remove")).to_have_count(0)

        owner.reload()
        cy = owner.locator("#members li", has_text="cy@example.org")
        expect(cy).to_contain_text("member · email not verified")  # Earmark never saw proof of the address
        cy.get_by_role("button", name="Remove").click()
        expect(owner.locator("#confirm-text")).to_have_text(
            "Remove Cy from your household? They are signed out at once."
        )
        owner.locator("#confirm-ok").click()
        expect(owner.locator("#members li")).to_have_count(1)
        guest.reload()
        expect(guest.locator("#signin")).to_be_visible()  # signed out: the session ended with the membership


def test_the_household_page_says_which_addresses_nobody_proved(live: Live) -> None:
    from playwright.sync_api import expect

    def join(household: str, email: str, name: str, password: str) -> None:
        token = members.invite(live.registry, household, email, name, members.Role.MEMBER, "operator")
        members.accept(live.registry, token, hash_password(password))

    join("h1", "cy@example.org", "Cy", "a squatter's pick")
    live.registry.create_household("h2", "The Kims")
    join("h2", "cy@example.org", "Cy", "the real cy's password")  # the address's owner, in her own household
    with chromium() as browser:
        owner, _ = open_page(browser, live.url, PHONE)
        sign_in_page(owner, "ana@example.org", "correct horse")
        expect(owner.locator("#members li span")).to_have_text(
            ["Ana <ana@example.org> · owner", "Cy <cy@example.org> · member · email not verified"]
        )


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_a_member_changes_their_password(live: Live, tmp_path: Path, viewport: dict[str, int]) -> None:
    from playwright.sync_api import expect

    with chromium() as browser:
        page, _ = open_page(browser, live.url, viewport)
        sign_in_page(page, "ana@example.org", "correct horse")
        page.get_by_label("Current password").fill("not it at all")
        page.get_by_label("New password (at least 10 characters)").fill("a better password")
        page.get_by_role("button", name="Change password").click()
        expect(page.locator("#password-result")).to_have_text("That is not your current password.")
        page.get_by_label("Current password").fill("correct horse")
        page.get_by_label("New password (at least 10 characters)").fill("a better password")
        page.get_by_role("button", name="Change password").click()
        expect(page.locator("#password-result")).to_contain_text("Password changed.")
        check_screenshot(page, tmp_path / "password.png", viewport)
        page.get_by_role("button", name="Sign out").click()
        sign_in_page(page, "ana@example.org", "a better password")
        expect(page.locator("#app")).to_be_visible()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_a_reviewer_hears_and_corrects_a_clip_and_an_admin_manages_reviewers(
    live: Live, tmp_path: Path, viewport: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    live.registry.add_reviewer("ada", hash_password("admin password"), "admin")
    with chromium() as browser:
        page, console = open_page(browser, f"{live.url}/review", viewport)
        page.get_by_label("Name", exact=True).fill("rita")
        page.get_by_label("Password", exact=True).fill("reviewer pw")
        page.get_by_role("button", name="Sign in").click()
        correction = page.get_by_label("What was said")
        expect(correction).to_have_value("turn on the lights")  # the recognizer's text, to correct
        expect(page.locator("#admin")).to_be_hidden()
        audio = page.locator("#clip-audio")
        # The browser loaded and decoded the clip's audio (0.1 s of the fixture's WAV).
        page.wait_for_function("document.getElementById('clip-audio').readyState >= 1")
        assert 0.05 < float(audio.evaluate("a => a.duration")) < 0.2
        check_screenshot(page, tmp_path / "review.png", viewport)
        correction.fill("turn on the hall lights")
        page.get_by_role("button", name="Submit and take the next clip").click()
        expect(page.locator("#clip-status")).to_have_text("Saved. No more clips are waiting for review.")
        corrected = live.registry.db.execute("SELECT corrected FROM assignments WHERE status = 'submitted'").fetchall()
        assert corrected == [("turn on the hall lights",)]

        admin, _ = open_page(browser, f"{live.url}/review", viewport)
        admin.get_by_label("Name", exact=True).fill("ada")
        admin.get_by_label("Password", exact=True).fill("admin password")
        admin.get_by_role("button", name="Sign in").click()
        expect(admin.locator("#reviewers tr")).to_have_count(2)
        expect(admin.locator("#reviewing")).to_be_hidden()  # an admin does not hear clips
        admin.locator("#new-name").fill("tom")
        admin.get_by_role("button", name="Add").click()
        expect(admin.locator("#reviewers tr")).to_have_count(3)
        expect(admin.locator("#reviewers tr", has_text="tom")).to_contain_text("waiting for activation")
        link = admin.locator("#activation-link")
        expect(link).to_contain_text("/review#activate=")
        # Tom opens his link and chooses his own password: the admin never knows it.
        tom, _ = open_page(browser, link.inner_text(), viewport)
        expect(tom.locator("#activate-name")).to_have_text("tom")
        tom.get_by_label("New password (10+ characters)").fill("tom's own password")
        tom.get_by_role("button", name="Activate and sign in").click()
        expect(tom.locator("#reviewing")).to_be_visible()
        expect(tom.locator("#activate")).to_be_hidden()
        admin.reload()
        expect(admin.locator("#reviewers tr", has_text="tom")).not_to_contain_text("waiting for activation")
        check_screenshot(admin, tmp_path / "admin.png", viewport)
        admin.reload()  # signed in from before: still no way to remove oneself
        expect(admin.locator("#reviewers tr")).to_have_count(3)
        expect(admin.get_by_role("button", name="Remove ada")).to_have_count(0)
        admin.get_by_role("button", name="Remove rita").click()
        expect(admin.locator("#confirm-text")).to_contain_text("Remove rita?")
        admin.locator("#confirm-ok").click()
        expect(admin.locator("#reviewers tr")).to_have_count(2)
        page.get_by_role("button", name="Look for a clip").click()  # rita's session ended with her account
        expect(page.locator("#signin-error")).to_have_text("You were signed out. Sign in again to go on.")
        expect(page.locator("#reviewing")).to_be_hidden()
    assert (
        live.registry.reviewer_role(
            live.registry.db.execute("SELECT reviewer_id FROM reviewers WHERE name = 'tom'").fetchone()[0]
        )
        == "reviewer"
    )
    assert not [line for line in console if "Content Security Policy" in line]


def test_a_member_downloads_the_signed_history_and_checks_it_offline(live: Live, tmp_path: Path) -> None:
    # Issue 28: a proof the operator cannot quietly rewrite, from the app, checked with the key alone.
    import subprocess
    import sys

    from playwright.sync_api import expect

    from tests.conftest import REPO

    live.registry.set_consent("h1", False, "ana", Channel.VOICE)  # an opt-out to keep a proof of
    with chromium() as browser:
        page, console = open_page(browser, live.url, PHONE)
        sign_in_page(page, "ana@example.org", "correct horse")
        expect(page.locator("#history tr")).to_have_count(3)
        with page.expect_download() as proof_download:
            page.get_by_role("link", name="Download signed history").click()
        proof = tmp_path / proof_download.value.suggested_filename
        proof_download.value.save_as(proof)
        with page.expect_download() as key_download:
            page.get_by_role("link", name="Download the key").click()
        key = tmp_path / "key.pem"
        key_download.value.save_as(key)
        check_screenshot(page, tmp_path / "proof.png", PHONE)
        assert not [line for line in console if "error" in line.lower()]
    assert proof.name.startswith("earmark-audit-proof-") and proof.suffix == ".json"
    done = subprocess.run(
        [sys.executable, "-m", "earmark", "audit", "verify", "--proof", str(proof), "--public-key", str(key)],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # created, its member, review on, the sign-in above, review off by voice
    assert "proof holds: 5 entries of household h1" in done.stdout


def test_a_member_downloads_all_the_households_data(live: Live, tmp_path: Path) -> None:
    # Issue 28, item 3: "Download my data" saves one zip through the browser's own download,
    # while the page says how far it is.
    import zipfile

    from playwright.sync_api import expect

    with chromium() as browser:
        page, console = open_page(browser, live.url, PHONE)
        sign_in_page(page, "ana@example.org", "correct horse")
        with page.expect_download() as download:
            page.get_by_role("button", name="Download my data").click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        expect(page.locator("#export-status")).to_have_text("Your data is saved: 1 recording.")
        check_screenshot(page, tmp_path / "export.png", PHONE)
        assert not [line for line in console if "error" in line.lower()]
    assert saved.name.startswith("earmark-data-") and saved.suffix == ".zip"
    with zipfile.ZipFile(saved) as archive:
        [line] = archive.read("recordings.jsonl").decode().splitlines()
        assert json.loads(line)["id"] == str(live.clip)
        assert archive.read(json.loads(line)["audio"])[:4] == b"RIFF"


def test_who_heard_what_proven_and_taken_away_over_https(live_https: Live, tmp_path: Path) -> None:
    # Issue 28 as a household meets it, over HTTPS on both database engines: a reviewer hears
    # one clip; the app says so (when, under which pseudonym); after the opt-out, none since;
    # the signed history verifies offline; the data download holds the same account.
    import ssl
    import subprocess
    import sys
    import zipfile

    from playwright.sync_api import expect

    from tests.conftest import REPO

    certificate = tmp_path / "data" / "tls" / "app.crt"
    with httpx2.Client(base_url=live_https.url, verify=ssl.create_default_context(cafile=str(certificate))) as rita:
        rita.post("/api/review/login", json={"login": "rita", "password": "reviewer pw"}).raise_for_status()
        pseudonym = rita.get("/api/review/next").json()["clip"]
        assert rita.get(f"/api/review/clips/{pseudonym}/audio").status_code == 200
    with chromium() as browser:
        page, console = open_page(browser, live_https.url, PHONE)
        sign_in_page(page, "ana@example.org", "correct horse")
        expect(page.locator("#heard-summary")).to_have_text("1 of your 1 recording was heard by a reviewer.")
        heard = page.locator("#recordings li .heard")
        expect(heard).to_contain_text("Heard by a person: Reviewer ")
        pseudonym_shown = heard.inner_text().split("Reviewer ")[1][:6]
        page.get_by_role("switch", name="Let people review my recordings").click()
        expect(page.locator("#heard-summary")).to_contain_text("None since you turned review off on")
        with page.expect_download() as proof_download:
            page.get_by_role("link", name="Download signed history").click()
        proof_download.value.save_as(tmp_path / "proof.json")
        with page.expect_download() as key_download:
            page.get_by_role("link", name="Download the key").click()
        key_download.value.save_as(tmp_path / "key.pem")
        with page.expect_download() as data_download:
            page.get_by_role("button", name="Download my data").click()
        data_download.value.save_as(tmp_path / "data.zip")
        expect(page.locator("#export-status")).to_have_text("Your data is saved: 1 recording.")
        check_screenshot(page, tmp_path / "phone.png", PHONE)
        assert not [line for line in console if "error" in line.lower()]
    done = subprocess.run(
        [sys.executable, "-m", "earmark", "audit", "verify", "--proof", str(tmp_path / "proof.json"),
         "--public-key", str(tmp_path / "key.pem")],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and "proof holds" in done.stdout, done.stderr
    proven = json.loads((tmp_path / "proof.json").read_text())
    assert [e["detail"] for e in proven["entries"] if e["action"] == "consent.set"][-1].count('"review_allowed": false')
    with zipfile.ZipFile(tmp_path / "data.zip") as archive:
        [line] = archive.read("recordings.jsonl").decode().splitlines()
        assert json.loads(line)["heard"]["by"] == f"Reviewer {pseudonym_shown}"
        assert "rita" not in archive.read("household.json").decode()


def test_a_false_wake_shows_as_one_not_as_a_recording(live: Live) -> None:
    # Issue 27: the cloud's second wake check refused a request; the household sees that the
    # speaker woke by mistake and that nothing of it was kept.
    from playwright.sync_api import expect

    from pipeline.store import Clip
    from tests.review_helpers import make_clip

    refused: Clip = make_clip(
        household_id="h1", device_id="dev-h1", end_reason="wake_rejected", transcript="", consent_version=2
    )
    live.store.save(refused, None)
    with chromium() as browser:
        page, console = open_page(browser, live.url, PHONE)
        sign_in_page(page, "ana@example.org", "correct horse")
        expect(page.locator("#recordings li")).to_have_count(2)
        item = page.locator("#recordings li").filter(has_text="woke by mistake")
        expect(item).to_contain_text("Earmark did not hear its wake word, so nothing was recognized or kept.")
        expect(item.locator("audio")).to_have_count(0)
        assert not [line for line in console if "error" in line.lower()]
