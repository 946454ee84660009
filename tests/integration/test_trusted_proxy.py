"""Who the sign-in limits count: the peer, or a client a named reverse proxy (real nginx) vouches for.

Issue 24: uvicorn believed X-Forwarded-For from 127.0.0.1 by default, so a local client
naming a new address per guess was never refused. Both tests run the real
`earmark review serve` over HTTPS; the second puts Debian's nginx in front of it. The last
checks what the same HTTPS port says to someone who typed http:// (issue 29).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.broker import Broker, free_port
from tests.conftest import REPO, wait_until

GUESSES = 7  # the limit per account and address is 5: two past it
LIMITED = [401] * 5 + [429] * 2
SPOOFS = {"x-forwarded-for", "forwarded", "x-real-ip"}


def review(data: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "review_opt_out.cli", "--data-dir", str(data), *args],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


@contextmanager
def app(tmp_path: Path, *serve_args: str) -> Iterator[tuple[int, Path]]:
    """`earmark review serve` on loopback over HTTPS with members ana and bo; yields (port, certificate)."""
    data = tmp_path / "data"
    password = tmp_path / "pw"
    password.write_text("correct horse\n")
    review(data, "setup")
    review(data, "add-household", "h1", "The Parks")
    for email, name in (("ana@example.org", "Ana"), ("bo@example.org", "Bo")):
        review(data, "add-member", "h1", email, name, "--password-file", str(password))
    broker = Broker(tmp_path)
    broker.start()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "review_opt_out.cli", "--data-dir", str(data), "serve", "--host", "127.0.0.1",
         "--port", str(port), "--broker", f"127.0.0.1:{broker.port}", *serve_args],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        assert json.loads(server.stdout.readline())["type"] == "review_serving"
        assert wait_until(lambda: listening(port), 20), "the app did not listen"
        yield port, data / "tls" / "app.crt"
    finally:
        server.terminate()
        server.communicate(timeout=20)
        broker.stop()


def guesses(
    port: int, account: str, *, source: str = "127.0.0.1", tls: ssl.SSLContext | None = None, spoof: bool = False
) -> list[int]:
    """Status codes of GUESSES wrong passwords from `source`, each naming a new client address if `spoof`."""
    codes = []
    for n in range(GUESSES):
        headers = {"content-type": "application/json"}
        if spoof:  # every header a proxy might use to name the client, a new address each time
            claimed = f"203.0.113.{n + 1}"
            headers |= {"x-forwarded-for": claimed, "forwarded": f"for={claimed}", "x-real-ip": claimed}
        conn: http.client.HTTPConnection
        if tls is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
        else:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, source_address=(source, 0), context=tls)
        try:
            conn.request("POST", "/api/login", json.dumps({"login": account, "password": f"guess {n}"}), headers)
            codes.append(conn.getresponse().status)
        finally:
            conn.close()
    return codes


def test_without_a_trusted_proxy_forwarded_headers_are_ignored(tmp_path: Path) -> None:
    with app(tmp_path) as (port, cert):
        tls = ssl.create_default_context(cafile=str(cert))
        assert guesses(port, "ana@example.org", tls=tls) == LIMITED  # the control
        # The attack from issue 24, rerun: a loopback client claiming a new address per guess.
        assert guesses(port, "bo@example.org", tls=tls, spoof=True) == LIMITED


def find_nginx() -> str:
    """Debian's nginx; a missing one fails the test (scripts/bootstrap.sh dev installs it), never skips it."""
    found = shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if found is None:
        pytest.fail("nginx is not installed: run `bash scripts/bootstrap.sh dev` (or apt-get install nginx)")
    return found


@contextmanager
def nginx(workdir: Path, app_port: int, cert: Path) -> Iterator[int]:
    """nginx on a loopback port with its own prefix, proxying to the app as the README says; yields its port."""
    workdir.mkdir()
    port = free_port()
    conf = workdir / "nginx.conf"
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = " ".join(f"{kind}_temp_path {workdir / kind};" for kind in kinds)  # nothing under /var/lib/nginx
    conf.write_text(
        # As root its workers would drop to nobody, who cannot enter pytest's 0700 tmp_path.
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"""worker_processes 1;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
    access_log {workdir / "access.log"};
    {temp}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass https://127.0.0.1:{app_port};
            proxy_ssl_trusted_certificate {cert};
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""
    )
    log = workdir / "stderr"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [find_nginx(), "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log"),
             "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        assert wait_until(lambda: process.poll() is not None or listening(port), 10)
        assert process.poll() is None, log.read_text() + (workdir / "error.log").read_text()
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_behind_nginx_clients_are_told_apart_and_cannot_name_themselves(tmp_path: Path) -> None:
    with (
        app(tmp_path, "--trusted-proxy", "127.0.0.1") as (app_port, cert),
        nginx(tmp_path / "nginx", app_port, cert) as port,
    ):
        # 127.0.0.2 claims a new address per guess through the proxy: nginx replaces the claim.
        assert guesses(port, "ana@example.org", source="127.0.0.2", spoof=True) == LIMITED
        # Another client, as nginx sees it, is counted apart: the app knows the two addresses.
        assert guesses(port, "ana@example.org", source="127.0.0.3")[:5] == [401] * 5
        # A client on the proxy's own address: were nginx to append to the client's header
        # ($proxy_add_x_forwarded_for), uvicorn would skip the trusted last hop and believe
        # the claim before it.
        assert guesses(port, "bo@example.org", source="127.0.0.1", spoof=True) == LIMITED
    access = (tmp_path / "nginx" / "access.log").read_text()
    assert "127.0.0.2 " in access and "127.0.0.3 " in access  # the requests really went through nginx


def plain_get(port: int, host: str) -> tuple[int, str | None, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": host})
        answer = conn.getresponse()
        return answer.status, answer.getheader("location"), answer.read().decode()
    finally:
        conn.close()


def test_plain_http_on_the_https_port_is_pointed_to_https(tmp_path: Path) -> None:
    # Issue 29: a person typing http://…:8443 got an empty reply from the TLS listener.
    with app(tmp_path) as (port, cert):
        idle = socket.create_connection(("127.0.0.1", port))  # says nothing: holds up no one
        try:
            status, location, body = plain_get(port, f"127.0.0.1:{port}")
            assert (status, location) == (302, f"https://127.0.0.1:{port}/")
            assert f"https://127.0.0.1:{port}/" in body
            # A Host the app does not answer to gets the words, never a link to it.
            status, location, body = plain_get(port, "attacker.example")
            assert (status, location) == (400, None)
            assert "https://" in body and "attacker" not in body
            # The same port still serves the app over TLS, to the same client.
            conn = http.client.HTTPSConnection(
                "127.0.0.1", port, timeout=30, context=ssl.create_default_context(cafile=str(cert))
            )
            try:
                conn.request("GET", "/")
                answer = conn.getresponse()
                assert answer.status == 200 and b"<html" in answer.read().lower()
            finally:
                conn.close()
        finally:
            idle.close()
