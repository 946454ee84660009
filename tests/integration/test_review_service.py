"""`earmark review serve` as an operator runs it: CLI set-up, the page, and the retained consent."""

from __future__ import annotations

import json
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from tests.broker import Broker, free_port, listening_addresses
from tests.conftest import REPO, wait_until
from tests.e2e.test_companion_browser import retained_consent


def review(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "review_opt_out.cli", "--data-dir", str(data_dir), *args],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_serve_publishes_consent_and_serves_the_app(tmp_path: Path) -> None:
    data = tmp_path / "data"
    password = tmp_path / "pw"
    password.write_text("correct horse\n")
    refused = review("add-household", "h1", "The Parks", data_dir=data)
    assert refused.returncode == 2 and "earmark review setup" in refused.stderr  # no key: nothing unsigned
    setup = review("setup", data_dir=data)
    assert setup.returncode == 0 and "created" in setup.stdout
    # ... and the app's self-signed certificate, for phones on the LAN.
    cert = data / "tls" / "app.crt"
    assert "created the app's self-signed certificate" in setup.stdout and "127.0.0.1" in setup.stdout
    assert stat.S_IMODE((data / "tls" / "app.key").stat().st_mode) == 0o600
    key_file = data / "keys" / "consent-signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "kept the existing" in review("setup", data_dir=data).stdout  # idempotent: never a new key
    assert review("add-household", "h1", "The Parks", data_dir=data).returncode == 0
    added = review("add-member", "h1", "ana@example.org", "Ana", "--password-file", str(password), data_dir=data)
    assert added.returncode == 0, added.stderr
    duplicate = review("add-household", "h1", "Again", data_dir=data)
    assert duplicate.returncode == 2 and "already exists" in duplicate.stderr

    broker = Broker(tmp_path)
    broker.start()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "review_opt_out.cli", "--data-dir", str(data), "serve",
         "--broker", f"127.0.0.1:{broker.port}", "--port", str(port), "--sample-interval", "0.5"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        serving = json.loads(server.stdout.readline())  # an operator is told where it serves
        assert f"https://127.0.0.1:{port}/" in serving["urls"] and serving["url"] == serving["urls"][0]
        assert serving["broker"] == f"mqtt://127.0.0.1:{broker.port}"
        # Every interface, so phones on the LAN reach it.
        assert wait_until(lambda: listening_addresses(port) == {"0.0.0.0"}, 10)  # noqa: S104
        # A new household's consent (off, version 1) reaches the broker for its devices, signed.
        message = retained_consent(broker, "h1", 1, timeout=20)
        assert (message["review_allowed"], message["consent_version"]) == (False, 1)
        with httpx2.Client(
            base_url=f"https://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=str(cert))
        ) as client:
            deadline = time.monotonic() + 10
            while True:
                try:
                    page = client.get("/")
                    break
                except httpx2.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            assert "Let people review my recordings" in page.text
            login = client.post("/api/login", json={"login": "ana@example.org", "password": "correct horse"})
            assert login.status_code == 200 and "secure" in login.headers["set-cookie"].lower()
            assert page.headers["strict-transport-security"] == "max-age=31536000"
            assert client.get("/", headers={"host": "attacker.example"}).status_code == 400
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}") as plain:
            pointed = plain.get("/")  # no clear-text app on its port: only where to go instead
            assert (pointed.status_code, pointed.headers["location"]) == (302, f"https://127.0.0.1:{port}/")
            assert "review" not in pointed.text.lower()
        # A second server on the same port is refused with the fix in one line.
        busy = review("serve", "--broker", f"127.0.0.1:{broker.port}", "--port", str(port), data_dir=data)
        assert busy.returncode == 2 and f"cannot listen on 0.0.0.0:{port}" in busy.stderr
    finally:
        server.terminate()
        server.communicate(timeout=20)
        broker.stop()
    verified = review("audit", "verify", data_dir=data)
    assert verified.returncode == 0 and "chain intact" in verified.stdout
