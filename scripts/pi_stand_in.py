"""Install a speaker on an arm64 stand-in for Raspberry Pi OS, the way a Pi's first boot does.

    python -m scripts.pi_stand_in bookworm|trixie [--report FILE]

No Pi and no Pi OS image can be had here, but Debian arm64 (Pi OS's base) runs under
qemu-user with proot, unprivileged. Per release:

1. **Base root** (`scripts/pi_stand_in_base.sh`): debootstrap + what Pi OS Lite has.
   Cached under `$EARMARK_PI_CACHE` by a key over that script, so a rerun skips it.
2. **Flash**: a blank Pi-layout image configured by `earmark flash`'s own code (a wheel
   of this checkout, device.toml, credentials, consent key, user-data); its boot
   partition's files are copied into the root's `/boot/firmware`.
3. **First boot**: the command cloud-init would run from `user-data` (the real
   `install.sh`), inside a fresh copy of the base root.
4. **Checks** on what it installed: user and groups, venv, files and modes,
   `/etc/asound.conf`, `config.txt` lines, the unit enabled and passing `systemd-analyze
   verify`, no credentials left on the FAT side.
5. **Run**: the installed `earmark device listen` on the bundled sample through ALSA's
   file plugin (a capture device PyAudio opens like a microphone), compared event by
   event with the same run on this machine; then `scripts/speaker_bench.py` in the root
   for cold start and peak RSS under emulation.

Prints one JSON report (timings per step, check results, figures); exits 1 if a check
fails. `tests/pi/test_pi_stand_in.py` runs it for both releases.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scripts.pi_sample import asoundrc, comparable, write_raw_sample

REPO = Path(__file__).resolve().parent.parent
BASE_SCRIPT = REPO / "scripts" / "pi_stand_in_base.sh"
RELEASES = {"bookworm": "3.11", "trixie": "3.13"}
AUDIO = "respeaker-2mic-v2"  # a HAT, so install.sh writes its dtoverlay lines
SAMPLE_SECONDS = 6.0  # the bundled request is 4.5 s; past its end the file mic reads silence
# pip inside the root reaches the package registry with the host's trust store.
_PIP_ENV = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_DEFAULT_TIMEOUT", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")


def cache_dir() -> Path:
    """Where base roots and pip's downloads are kept between runs."""
    default = (
        Path("/var/cache/earmark/pi-stand-in") if os.geteuid() == 0 else Path.home() / ".cache/earmark/pi-stand-in"
    )
    return Path(os.environ.get("EARMARK_PI_CACHE", default))


def base_key(release: str) -> str:
    """Changes when the base root would be built differently."""
    return hashlib.sha256(release.encode() + BASE_SCRIPT.read_bytes()).hexdigest()[:12]


def proot(root: Path, *command: str, env: dict[str, str] | None = None, binds: Sequence[str] = ()) -> list[str]:
    """A command line that runs `command` as root inside the arm64 root."""
    variables = {
        "PATH": "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONUSERBASE": "/nonexistent",  # the host's user site must not leak in
        "PIP_USER": "0",
        "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        **{k: v for k, v in os.environ.items() if k in _PIP_ENV},
        **(env or {}),
    }
    bind_args = [arg for bind in ("/dev", "/sys", *binds) for arg in ("-b", bind)]
    return [
        "proot", "-q", "qemu-aarch64-static", "-0", "-r", str(root), *bind_args, "-w", "/",
        "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in variables.items()), *command,
    ]  # fmt: skip


class StandIn:
    """One release's stand-in: its root, its timings, its checks."""

    def __init__(self, release: str, log: Callable[[str], None]) -> None:
        self.release = release
        self.cache = cache_dir()
        self.base = self.cache / f"base-{release}-{base_key(release)}"
        self.root = self.cache / f"run-{release}"
        self.pip_cache = self.cache / f"pip-{release}"
        self.timings: dict[str, float] = {}
        self.checks: dict[str, bool] = {}
        self.details: dict[str, Any] = {}
        self._log = log

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self._log(f"pi-stand-in {self.release}: {name} ...")
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = round(time.monotonic() - started, 1)
            self._log(f"pi-stand-in {self.release}: {name} took {self.timings[name]} s")

    def run(self, *command: str, env: dict[str, str] | None = None, binds: Sequence[str] = ()) -> str:
        done = subprocess.run(proot(self.root, *command, env=env, binds=binds), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        return done.stdout

    def check(self, name: str, ok: bool, detail: object = None) -> None:
        self.checks[name] = bool(ok)
        if not ok:
            self.details[f"failed: {name}"] = detail

    # 1. base root -----------------------------------------------------------------
    def ensure_base(self) -> None:
        self.cache.mkdir(parents=True, exist_ok=True)
        # One builder per release: a test session may start it early in the background.
        with open(self.cache / f"{self.release}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (self.base / ".complete").exists():
                self.details["base"] = "cached"
                return
            self.details["base"] = "built"
            building = self.base.with_name(self.base.name + ".building")
            subprocess.run(["bash", str(BASE_SCRIPT), self.release, str(building)], check=True)
            (building / ".complete").write_text(base_key(self.release))
            building.rename(self.base)

    # 2. flash ---------------------------------------------------------------------
    def flash(self, work: Path, consent_pem: str, broker_port: int) -> None:
        from pydantic import SecretStr

        from hardware.flash import FlashConfig, WifiSettings, boot_partition_offset, build_wheel, configure_image
        from scripts.pi_image import blank_pi_image, tool

        config = FlashConfig(
            hostname=f"stand-in-{self.release}",
            ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStandInKeyNotForUse ci@stand-in",
            device_id=f"stand-in-{self.release}",
            household_id="stand-in-home",
            broker_url=f"mqtt://127.0.0.1:{broker_port}",
            device_password=SecretStr("stand-in-password"),
            consent_public_key=consent_pem,
            wifi=WifiSettings(ssid="Stand-in Wi-Fi", password=SecretStr("stand-in wifi pass")),
            audio=AUDIO,
        )
        image = configure_image(
            blank_pi_image(work / "raspios.img", self.base / "boot/firmware/config.txt"),
            work / "earmark.img",
            config,
            build_wheel(work),
        )
        boot = self.root / "boot/firmware"
        target = f"{image}@@{boot_partition_offset(image)}"
        subprocess.run([tool("mcopy"), "-s", "-o", "-n", "-i", target, "::*", str(boot)], check=True)
        self.details["boot_files"] = sorted(str(p.relative_to(boot)) for p in boot.rglob("*") if p.is_file())

    # 3. first boot ----------------------------------------------------------------
    def first_boot(self) -> None:
        user_data = (self.root / "boot/firmware/user-data").read_text()
        runcmd = next(line for line in user_data.splitlines() if "install.sh" in line)
        command = [part.strip() for part in runcmd.strip().lstrip("- ").strip("[]").split(",")]
        if command[0] != "env":
            raise RuntimeError(f"user-data's install command changed shape: {runcmd}")
        self.pip_cache.mkdir(parents=True, exist_ok=True)
        self.details["install_log_tail"] = self.run(
            *command, binds=[f"{self.pip_cache}:/root/.cache/pip"]
        ).splitlines()[-3:]

    # 4. checks --------------------------------------------------------------------
    def verify_install(self) -> None:
        root = self.root
        passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
        group_lines = [line.split(":") for line in (root / "etc/group").read_text().splitlines()]
        groups = {fields[0]: fields[3].split(",") for fields in group_lines}
        gids = {fields[0]: int(fields[2]) for fields in group_lines}
        self.check("user earmark, no login shell", "earmark" in passwd and passwd["earmark"][6] == "/usr/sbin/nologin")
        self.check("earmark in groups audio and gpio", all("earmark" in groups.get(g, []) for g in ("audio", "gpio")))
        venv = root / "opt/earmark/.venv"
        self.check("venv with earmark-speaker", (venv / "bin/earmark-speaker").is_file())
        versions = self.run("/opt/earmark/.venv/bin/python", "-c", _VERSIONS_SCRIPT)
        self.details["installed"] = json.loads(versions)
        self.check(
            "no openWakeWord, onnxruntime, scikit-learn, scipy or TensorFlow", not self.details["installed"]["unwanted"]
        )
        installed = self.details["installed"]
        self.check(
            "microWakeWord's models and features, for two-stage wake detection",
            "alexa" in installed["micro_models"] and installed["micro_features"],
            installed,
        )
        # The speaker's wheel holds no cloud: its launcher says so, in one line.
        cloud = subprocess.run(
            proot(root, "/opt/earmark/.venv/bin/earmark", "pipeline", "--help"), capture_output=True, text=True
        )
        self.check(
            "no cloud on the speaker",
            cloud.returncode == 2 and "the cloud is not installed here" in cloud.stderr,
            cloud.stderr[-500:],
        )
        earmark_gid = gids.get("earmark", -1)
        for path, mode, group in (
            ("etc/earmark", 0o750, earmark_gid),
            ("etc/earmark/device.toml", 0o640, earmark_gid),
            ("etc/earmark/credentials.env", 0o600, 0),
            ("etc/earmark/consent.pub", 0o644, 0),
        ):
            info = (root / path).lstat() if (root / path).exists() else None
            actual = None if info is None else (oct(stat.S_IMODE(info.st_mode)), info.st_gid)
            self.check(f"/{path} mode {oct(mode)}", actual == (oct(mode), group), actual)
        self.check(
            "credentials.env holds the password",
            'EARMARK_MQTT__PASSWORD="stand-in-password"' in (root / "etc/earmark/credentials.env").read_text(),
        )
        leftovers = [p.name for p in (root / "boot/firmware/earmark").iterdir() if p.name == "credentials.env"]
        self.check("no credentials left on the FAT partition", not leftovers, leftovers)
        expected_alsa = (REPO / f"hardware/alsa/asound-{AUDIO}.conf").read_text()
        self.check("/etc/asound.conf is the HAT's", (root / "etc/asound.conf").read_text() == expected_alsa)
        config_txt = (root / "boot/firmware/config.txt").read_text().splitlines()
        self.check(
            "config.txt has i2s and the HAT's overlay",
            {"dtparam=i2s=on", "dtoverlay=respeaker-2mic-v2_0"} <= set(config_txt),
        )
        wants = root / "etc/systemd/system/multi-user.target.wants/earmark-speaker.service"
        self.check(
            "unit enabled", wants.is_symlink() and os.readlink(wants) == "/etc/systemd/system/earmark-speaker.service"
        )
        unit = (root / "etc/systemd/system/earmark-speaker.service").read_text()
        self.check("unit runs the venv's speaker", "ExecStart=/opt/earmark/.venv/bin/earmark-speaker " in unit)
        # The root's own systemd-analyze: the host's may be older than the release's units.
        verify = subprocess.run(
            proot(root, "systemd-analyze", "verify", "/etc/systemd/system/earmark-speaker.service"),
            capture_output=True, text=True,
        )  # fmt: skip
        self.check(
            "systemd-analyze verify", verify.returncode == 0 and not verify.stderr.strip(), verify.stderr[-1500:]
        )

    # 5. run -------------------------------------------------------------------------
    def listen_events(self, host_events: list[dict[str, Any]]) -> None:
        raw = self.root / "root/sample.raw"
        write_raw_sample(raw)
        (self.root / "root/file-mic.conf").write_text(asoundrc(Path("/root/sample.raw")))
        # Under proot alsa-lib runs none of alsa.conf's load hooks (~/.asoundrc, conf.d,
        # /etc/asound.conf), so the file mic is named as a second top-level config.
        output = self.run(
            "/opt/earmark/.venv/bin/earmark", "device", "listen", "--input", "mic", "--device", "fakemic",
            "--max-seconds", str(SAMPLE_SECONDS),
            env={"ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf:/root/file-mic.conf"},
        )  # fmt: skip
        events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        self.details["events"] = [comparable(e) for e in events]
        self.check(
            "same events as on x86-64",
            [comparable(e) for e in events] == [comparable(e) for e in host_events],
            {"stand-in": self.details["events"], "x86-64": [comparable(e) for e in host_events]},
        )

    def speaker_bench(self) -> None:
        # One second of audio: under emulation every audio second costs ~12 s.
        write_raw_sample(self.root / "root/one-second.wav", seconds=1.0, wav=True)
        # Measuring code is not in the speaker's wheel: the script is copied in for the run.
        shutil.copy(Path(__file__).with_name("speaker_bench.py"), self.root / "root/speaker_bench.py")
        output = self.run(
            "/opt/earmark/.venv/bin/python", "/root/speaker_bench.py", "--runs", "1", "--input", "/root/one-second.wav",
            "--json", "/root/speaker-bench.json",
        )  # fmt: skip
        self.details["speaker_bench_stdout"] = output.splitlines()[:2]
        self.details["speaker_bench"] = json.loads((self.root / "root/speaker-bench.json").read_text())


_VERSIONS_SCRIPT = """
import importlib.util, json, platform, sys
from firmware.micro_wake import bundled_micro_dir
unwanted = [m for m in ("openwakeword", "onnxruntime", "sklearn", "scipy", "tensorflow") if importlib.util.find_spec(m)]
micro = bundled_micro_dir()
print(json.dumps({
    "python": platform.python_version(), "machine": platform.machine(), "unwanted": unwanted,
    "micro_models": sorted(p.stem for p in micro.glob("*.json")) if micro else [],
    "micro_features": importlib.util.find_spec("pymicro_features") is not None,
}))
"""


def host_events(work: Path) -> list[dict[str, Any]]:
    """The same listen run on this machine, through the same kind of file-backed mic."""
    raw = work / "sample.raw"
    write_raw_sample(raw)
    home = work / "home"
    home.mkdir(exist_ok=True)
    (home / ".asoundrc").write_text(asoundrc(raw))
    done = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "listen", "--input", "mic", "--device", "fakemic",
         "--max-seconds", str(SAMPLE_SECONDS)],
        capture_output=True, text=True, check=True, cwd=REPO, env={**os.environ, "HOME": str(home)},
    )  # fmt: skip
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def consent_key() -> str:
    from nacl.signing import SigningKey

    from contract.consent_signature import public_key_pem

    return public_key_pem(bytes(SigningKey.generate().verify_key))


def fresh_copy(base: Path, root: Path) -> None:
    """The run's root: a copy of the cached base, so every first boot starts clean."""
    if root.exists():
        shutil.rmtree(root)
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)], check=True)


def stand_in(release: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Every step for one release; the report."""
    for binary in ("debootstrap", "proot", "qemu-aarch64-static", "mcopy", "mkfs.vfat"):
        if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
            raise SystemExit(f"pi-stand-in: {binary} is missing (scripts/bootstrap.sh dev installs it)")
    pi = StandIn(release, log)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="earmark-pi-") as tmp:
        work = Path(tmp)
        with pi.step("base root"):
            pi.ensure_base()
        with pi.step("copy root"):
            fresh_copy(pi.base, pi.root)
        with pi.step("flash"):
            pi.flash(work, consent_key(), broker_port=1883)
        with pi.step("first boot (install.sh)"):
            pi.first_boot()
        with pi.step("checks"):
            pi.verify_install()
        with pi.step("x86-64 listen"):
            events = host_events(work)
        with pi.step("arm64 listen"):
            pi.listen_events(events)
        with pi.step("arm64 speaker bench"):
            pi.speaker_bench()
    pi.timings["total"] = round(time.monotonic() - started, 1)
    return {
        "release": release,
        "ok": all(pi.checks.values()),
        "timings_seconds": pi.timings,
        "checks": pi.checks,
        **pi.details,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("release", choices=sorted(RELEASES))
    parser.add_argument("--report", type=Path, help="also write the JSON report here")
    parser.add_argument("--base-only", action="store_true", help="only build (or find cached) the base root")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("pi-stand-in: run as root (debootstrap and the stand-in's file owners need it)", file=sys.stderr)
        return 2
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.base_only:
        StandIn(args.release, log).ensure_base()
        return 0
    report = stand_in(args.release, log)
    text = json.dumps(report, indent=1)
    print(text)
    if args.report:
        args.report.write_text(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
