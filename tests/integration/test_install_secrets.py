"""install.sh takes the secrets off the SD card's FAT partition before anything can fail.

The real script runs in a private mount namespace: /boot is a directory of the test's,
/etc an overlay whose writes land in the test's directory, and `apt-get` one that fails
as it does on a first boot with no network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or not Path("/boot").is_dir(),
    reason="needs root, unshare(1) and a /boot to mount over",
)

NETWORK_CONFIG = """network:
  version: 2
  wifis:
    wlan0:
      dhcp4: true
      access-points:
        "Home":
          password: "hunter2 wifi"
"""


def test_secrets_leave_the_boot_partition_even_when_apt_get_fails(tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    earmark = boot / "firmware" / "earmark"
    earmark.mkdir(parents=True)
    (earmark / "credentials.env").write_text("EARMARK_MQTT__PASSWORD=s3cret\n")
    (earmark / "device.toml").write_text("[device]\n")
    (boot / "firmware" / "network-config").write_text(NETWORK_CONFIG)
    upper, work, fake_bin = tmp_path / "etc-upper", tmp_path / "etc-work", tmp_path / "bin"
    for directory in (upper, work, fake_bin):
        directory.mkdir()
    apt = fake_bin / "apt-get"
    apt.write_text("#!/bin/sh\necho 'E: Could not resolve deb.debian.org' >&2\nexit 100\n")
    apt.chmod(0o755)
    script = (
        f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc"
        f" && mount --bind {boot} /boot"
        f" && PATH={fake_bin}:$PATH exec bash {REPO / 'hardware' / 'install.sh'}"
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 100, done.stderr  # apt-get's failure stops the install ...
    assert "Could not resolve" in done.stderr
    # ... after the secrets left the card.
    assert not (earmark / "credentials.env").exists()
    moved = upper / "earmark" / "credentials.env"
    assert moved.read_text() == "EARMARK_MQTT__PASSWORD=s3cret\n"
    assert moved.stat().st_mode & 0o777 == 0o600
    assert (upper / "earmark").stat().st_mode & 0o777 == 0o750
    network = (boot / "firmware" / "network-config").read_text()
    assert "hunter2" not in network and '"Home":' in network
