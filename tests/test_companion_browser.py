"""The companion app in a real headless Chromium (Debian's, driven by Playwright), against a
live server, a real mosquitto, and the real consent publisher."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import paho.mqtt.client as mqtt
import pytest
import uvicorn
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from contract.mqtt import MqttSettings
from review_opt_out.app import create_app
from review_opt_out.auth import add_member, hash_password
from review_opt_out.publisher import ConsentPublisher
from review_opt_out.registry import Channel, Registry
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


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, Registry, Broker, Any]]:
    broker = Broker(tmp_path)
    broker.start()
    store, registry = open_both(tmp_path / "data")
    registry.create_household("h1", "The Parks")
    add_member(registry, "h1", "ana@example.org", "Ana", "correct horse")
    registry.add_reviewer("rita", hash_password("reviewer pw"))
    version = registry.set_consent("h1", True, "ana", Channel.APP).consent_version
    clip = capture(store, "h1", True, version)
    assert registry.sample(1.0) == 1
    publisher = ConsentPublisher(registry, MqttSettings(port=broker.port))
    publisher.start()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(registry, publisher.notify), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", registry, broker, clip
    server.should_exit = True
    thread.join(timeout=10)
    publisher.stop()
    broker.stop()


def test_switching_review_off_in_the_browser(live: tuple[str, Registry, Broker, Any], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, registry, broker, _clip = live
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
        page.get_by_label("Email").fill("ana@example.org")
        page.get_by_label("Password").fill("correct horse")
        page.get_by_role("button", name="Sign in").click()
        toggle = page.get_by_role("switch", name="Let people review my recordings")
        expect(toggle).to_be_checked()
        expect(page.locator("#history tr")).to_have_count(2)
        page.screenshot(path=str(tmp_path / "before.png"), full_page=True)

        toggle.click()  # one tap

        expect(toggle).not_to_be_checked()
        expect(page.locator("#review-status")).to_contain_text("nobody reviews your recordings")
        expect(page.locator("#history tr")).to_have_count(3)
        expect(page.locator("#history tr").first).to_contain_text("Review off")
        expect(page.locator("#history tr").first).to_contain_text("Ana, in the app")
        page.screenshot(path=str(tmp_path / "after.png"), full_page=True)
        browser.close()

    assert registry.household("h1").review_allowed is False
    message = retained_consent(broker, "h1", 3)
    assert (message["review_allowed"], message["consent_version"]) == (False, 3)
    # The clip that was in the pool is gone from the reviewer's queue, and its URL refuses.
    assert reviewer.get("/api/review/next").json() == {"clip": None}
    assert reviewer.get(f"/api/review/clips/{pseudonym}/audio").status_code == 404
    request_cleanup()


def test_a_locked_out_member_is_told_so_not_that_the_password_is_wrong(
    live: tuple[str, Registry, Broker, Any], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, _registry, _broker, _clip = live
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 390, "height": 844})
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.goto(url)
        error = page.locator("#signin-error")
        page.get_by_label("Email").fill("ana@example.org")
        for attempt in range(5):
            page.get_by_label("Password").fill(f"guess {attempt}")
            page.get_by_role("button", name="Sign in").click()
            expect(error).to_have_text("Wrong email or password.")
            page.evaluate("document.getElementById('signin-error').hidden = true")
        page.get_by_label("Password").fill("correct horse")
        page.get_by_role("button", name="Sign in").click()
        expect(error).to_have_text(
            "Too many wrong passwords for this account from this device. Sign-in is paused; try again in 15 minutes."
        )
        expect(page.locator("#app")).to_be_hidden()
        page.screenshot(path=str(tmp_path / "locked.png"), full_page=True)
        browser.close()
    # The page's own script and style load under the CSP: nothing was blocked.
    assert not [line for line in console if "Content Security Policy" in line]
