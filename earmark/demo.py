"""`earmark up --demo`: a reviewer sees the sample's recording within a minute.

A demo only, labelled as one, never the default. Nothing here bypasses consent: the
household turns review on the way a person does, signed in to its own app as its member
(the same API call the switch makes); the pool samples every eligible clip every 10
seconds instead of 0.2 % a minute; and a reviewer account is made with a password in a
private file. Everything a real deployment decides differently is in this module.
"""

from __future__ import annotations

import http.cookiejar
import json
import secrets
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from contract.config import ConfigError
from hardware.broker_config import write_private

REVIEWER = "demo-reviewer"
SERVE_ARGS = ("--sample-fraction", "1.0", "--sample-interval", "10")


def add_reviewer(review: list[str], data_dir: Path, env: dict[str, str] | None) -> Path:
    """The demo's reviewer account (kept across runs); returns its password file."""
    password_file = data_dir / "reviewer-password"
    if not password_file.exists():
        write_private(password_file, secrets.token_urlsafe(12) + "\n")
    # Refused politely when it exists already (a second `earmark up --demo`).
    subprocess.run(
        [sys.executable, "-m", *review, "add-reviewer", REVIEWER, "--password-file", str(password_file)],
        capture_output=True,
        check=False,
        env=env,
    )
    return password_file


def turn_review_on(port: int, certificate: Path, email: str, password: str) -> None:
    """Sign in to the app as the household's member and switch review on, as a person would."""
    tls = ssl.create_default_context(cafile=str(certificate))
    tls.check_hostname = False  # the certificate names the machine's LAN names; this is 127.0.0.1
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=tls), urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    base = f"https://127.0.0.1:{port}"

    def call(method: str, path: str, body: dict[str, object], headers: dict[str, str]) -> dict[str, object]:
        request = urllib.request.Request(  # noqa: S310 - our own app, on loopback
            base + path, data=json.dumps(body).encode(), method=method,
            headers={"Content-Type": "application/json", **headers},
        )  # fmt: skip
        try:
            with opener.open(request, timeout=30) as response:
                answer: dict[str, object] = json.loads(response.read())
                return answer
        except OSError as err:
            raise ConfigError(f"--demo could not turn review on in the app ({err})") from err

    session = call("POST", "/api/login", {"login": email, "password": password}, {})
    call("PUT", "/api/consent", {"review_allowed": True}, {"X-CSRF-Token": str(session["csrf_token"])})


def notice(port: int, reviewer_password: Path) -> str:
    """What the person trying the demo is told."""
    return (
        "DEMO, not how Earmark runs for real: review was turned on for this household in its app, and every"
        " clip enters the review pool within 10 s (normally 0.2 % a minute). A reviewer signs in at"
        f" https://127.0.0.1:{port}/review as {REVIEWER} with the password in {reviewer_password}."
    )
