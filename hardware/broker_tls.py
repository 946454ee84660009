"""The broker's TLS: a private CA every flashed speaker trusts, and the broker's certificate.

Both are kept across runs; a new server certificate is made only for a new hostname,
and then needs the CA key.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from contract.config import ConfigError
from hardware.broker_files import write_private


def _kept_server_cert(out: Path, hostname: str) -> bool:
    names = ("server.crt", "server.key", "server.hostname")
    return all((out / n).exists() for n in names) and (out / "server.hostname").read_text() == hostname


def check_tls(out: Path, hostname: str) -> None:
    """Raise ConfigError if `make_tls` could not proceed (checked before anything is written)."""
    if (out / "ca.crt").exists() and not (out / "ca.key").exists() and not _kept_server_cert(out, hostname):
        # The CA key was taken offline, as it should be: the CA every speaker trusts is kept,
        # and this is said only when a new server certificate would need the key.
        raise ConfigError(f"a new server certificate for {hostname} needs the CA key: put it back as {out / 'ca.key'}")


def make_tls(
    out: Path, hostname: str = "localhost", days: int = 825, into: Path | None = None
) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for the broker; returns (ca, cert, key) as paths in `out`.

    An existing CA is kept (every flashed speaker trusts it), and so is a server
    certificate issued for the same hostname. New files are made in `into` (default
    `out`), so a caller can move them into place only once everything has worked.
    """
    work = out if into is None else into
    check_tls(out, hostname)
    final = (out / "ca.crt", out / "server.crt", out / "server.key")

    def openssl(*args: str) -> None:
        # umask 077 in openssl only: its keys (and everything else) are born 0600.
        subprocess.run(["openssl", *args], check=True, capture_output=True, umask=0o077)

    new_ca = not (out / "ca.crt").exists()
    if new_ca:
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(work / "ca.key"),
                "-out", str(work / "ca.crt"), "-days", str(days), "-subj", "/CN=Earmark broker CA")  # fmt: skip
    elif _kept_server_cert(out, hostname):
        return final
    ca_dir = work if new_ca else out
    key, csr, cert, ext = (work / n for n in ("server.key", "server.csr", "server.crt", "server.ext"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={hostname}")
    write_private(ext, f"subjectAltName=DNS:{hostname},IP:127.0.0.1\n")
    serial = work / "ca.srl"
    if work != out and (out / "ca.srl").exists():
        write_private(serial, (out / "ca.srl").read_text())  # the CA's serials keep counting up
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_dir / "ca.crt"), "-CAkey", str(ca_dir / "ca.key"),
            "-CAserial", str(serial), "-CAcreateserial", "-out", str(cert), "-days", str(days),
            "-extfile", str(ext))  # fmt: skip
    write_private(work / "server.hostname", hostname)
    return final
