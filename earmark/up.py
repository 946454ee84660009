"""`earmark up`: the whole system on one machine, for trying Earmark and for demos.

Starts a private mosquitto on a free loopback port (with a config it writes), the cloud
pipeline, and a device on the microphone or a WAV file, then prints the device's events
and the partial and final transcripts as they arrive. The three run as separate
processes, exactly as they would on a Pi and a server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import tomli_w

from contract import paths
from contract.cli import add_database_arguments
from contract.config import ConfigError
from earmark import demo as demo_mode
from hardware.broker_config import common_conf_lines, write_private
from pipeline.models import ENGLISH_DEFAULT as DEFAULT_MODEL_NAME  # `earmark models fetch-default`
from review_opt_out import lan
from review_opt_out.cli import DEFAULT_APP_PORT

DEVICE_ID = "local-speaker"
HOUSEHOLD_ID = "home"


def find_mosquitto(search_path: str | None = None) -> str:
    """The mosquitto binary, or a ConfigError that says how to install it."""
    # Debian installs it in /usr/sbin, which a normal user's PATH often lacks.
    if search_path is None:
        search_path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    found = shutil.which("mosquitto", path=search_path)
    if found is None:
        raise ConfigError("mosquitto is not installed: run `sudo apt-get install mosquitto` (Debian, Raspberry Pi OS)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def broker(data_dir: Path) -> Iterator[int]:
    """A private mosquitto for this run; yields its port."""
    binary = find_mosquitto()
    port = _free_port()
    # Clips, transcripts, device state and the broker's queue all live under data_dir.
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    broker_dir = data_dir / "broker"
    broker_dir.mkdir(mode=0o700, exist_ok=True)
    broker_dir.chmod(0o700)  # one made by an older Earmark, before anything private is written in it
    config = broker_dir / "mosquitto.conf"
    # Loopback only and this run's own process: anonymous access reaches nobody else.
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", *common_conf_lines(broker_dir)]
    if os.geteuid() == 0:
        lines.append("user root")  # else it drops to `mosquitto` and cannot write here
    lines.append(f"log_dest file {broker_dir / 'mosquitto.log'}")
    write_private(config, "\n".join(lines) + "\n")
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise ConfigError(f"mosquitto exited at start; see {broker_dir / 'mosquitto.log'}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise ConfigError("mosquitto did not start listening within 10 s")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


APP_EMAIL = "you@earmark.local"


def local_time_zone() -> str:
    """This machine's IANA time zone (the household's day for "delete everything I said today")."""
    with contextlib.suppress(OSError, ValueError):
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    with contextlib.suppress(OSError):
        name = Path("/etc/timezone").read_text(encoding="utf-8").strip()
        if name:
            return name
    return "UTC"


@contextlib.contextmanager
def companion_app(
    cloud_dir: Path, address: str, port: int, env: dict[str, str] | None = None, demo: bool = False
) -> Iterator[None]:
    """The consent service and its page, with this machine's household and one member
    (and with `demo`, review on and a reviewer: see `earmark.demo`)."""
    review = ["review_opt_out.cli", "--data-dir", str(cloud_dir)]
    password_file = cloud_dir.parent / "app-password"
    if not password_file.exists():
        write_private(password_file, secrets.token_urlsafe(12) + "\n")
    # Both refuse politely when they exist already (a second `earmark up`).
    subprocess.run(
        _python(*review, "add-household", HOUSEHOLD_ID, "This home", "--time-zone", local_time_zone()),
        capture_output=True,
        check=False,
        env=env,
    )
    subprocess.run(
        _python(*review, "add-member", HOUSEHOLD_ID, APP_EMAIL, "You", "--password-file", str(password_file)),
        capture_output=True,
        check=False,
        env=env,
    )
    # A password changed in the app makes the file stale: never point a person to it then.
    current = subprocess.run(
        _python(*review, "check-password", HOUSEHOLD_ID, APP_EMAIL, "--password-file", str(password_file)),
        capture_output=True,
        check=False,
        env=env,
    )
    sign_in = (
        f"the password in {password_file}"
        if current.returncode == 0
        else f"the password you chose in the app (the one in {password_file} is no longer yours)"
    )
    reviewer_password = demo_mode.add_reviewer(review, cloud_dir.parent, env) if demo else None
    # It prints the addresses a phone can open (HTTPS, the certificate `setup` made).
    serve = [*review, "serve", "--broker", address, "--port", str(port), *(demo_mode.SERVE_ARGS if demo else ())]
    server = subprocess.Popen(_python(*serve), env=env)
    _wait_listening(server, port)
    if reviewer_password is not None:
        if current.returncode == 0:
            password = password_file.read_text().strip()
            demo_mode.turn_review_on(port, cloud_dir / "tls" / "app.crt", APP_EMAIL, password)
        print(json.dumps({"type": "notice", "message": demo_mode.notice(port, reviewer_password)}), flush=True)  # noqa: T201
    notice = (
        f"companion app: sign in as {APP_EMAIL} with {sign_in} (the browser warns once about"
        " the self-signed certificate); switch review on or off and the device's next clip carries the new consent"
    )
    print(json.dumps({"type": "notice", "message": notice}), flush=True)  # noqa: T201
    try:
        yield
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=10)


def _wait_listening(server: subprocess.Popen[bytes], port: int) -> None:
    """Until the app accepts connections; if it exits instead, that is the run's error."""
    deadline = time.monotonic() + 120  # a bound for a hung start, far above any busy machine's
    while server.poll() is None:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    server.kill()
    server.wait()
    raise ConfigError(f"the companion app did not start on port {port} (its message is above); see --app-port")


def _write_speaker_config(data_dir: Path, input_spec: str, address: str, consent_key: Path) -> Path:
    """The speaker's settings as a file, so `earmark doctor` checks the very speaker `up` runs."""
    host, _, port = address.rpartition(":")
    settings = {
        "input": input_spec if input_spec in ("mic", "sample", "-") else str(Path(input_spec).expanduser().resolve()),
        "state_dir": str(data_dir / "device"),
        "consent_public_key": str(consent_key),
        "identity": {"device_id": DEVICE_ID, "household_id": HOUSEHOLD_ID},
        "mqtt": {"host": host, "port": int(port)},
    }
    path = paths.local_speaker_config(data_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    header = "# The speaker `earmark up` runs (rewritten at every start; its broker lives only while it runs).\n"
    write_private(path, header + tomli_w.dumps(settings))
    return path


def _device_command(speaker_config: Path, extra: Sequence[str]) -> list[str]:
    return _python("firmware.cli", "listen", "--config", str(speaker_config), "--stream", *extra)


def check_inputs(input_spec: str, with_app: bool, app_port: int) -> None:
    """What a person can get wrong, checked before anything starts (in well under a second)."""
    if input_spec not in ("mic", "sample", "-") and not Path(input_spec).expanduser().is_file():
        raise ConfigError(f"{input_spec}: no such audio file (--input takes mic, sample, a WAV file, or -)")
    if input_spec == "mic":
        from firmware.audio.mic import list_input_devices

        if not list_input_devices():
            raise ConfigError("no microphone found (is one connected?); try the bundled request: --input sample")
    if with_app:
        # The app listens on every address (phones on the LAN open it): so is that port free?
        reason = lan.bind_error("0.0.0.0", app_port)  # noqa: S104 - the app's own address, probed
        if reason is not None:
            raise ConfigError(
                f"the companion app cannot listen on port {app_port} ({reason}); choose another with --app-port"
            )


def _stay(pipeline: subprocess.Popen[str], input_spec: str) -> None:
    """The input is done, the demo is not: keep the app and the cloud until Ctrl-C."""
    notice = (
        f"{'the sample' if input_spec == 'sample' else 'the input'} is done; the companion app and the cloud keep"
        " running so you can look at the recording. Press Ctrl-C to stop everything."
    )
    print(json.dumps({"type": "notice", "message": notice}), flush=True)  # noqa: T201
    with contextlib.suppress(KeyboardInterrupt):  # the way a person ends a demo: not a failure
        pipeline.wait()


def up(
    input_spec: str,
    data_dir: Path,
    vosk_model: Path | None,
    extra_device_args: Sequence[str],
    with_app: bool = False,
    grammar: Sequence[str] = (),
    app_port: int = DEFAULT_APP_PORT,
    database: str | None = None,
    exit_when_done: bool = False,
    demo: bool = False,
) -> int:
    """Run broker, pipeline (and the companion app) and a device until its input ends (or Ctrl-C).

    With the app, a file's end does not end the run (unless `exit_when_done`): the person
    trying Earmark opens the app next, and it must still be there.

    `database` (postgresql://…) puts the cloud's rows there instead of SQLite in the data
    directory; the cloud's processes get it in their environment, not on a command line
    every local user can read.
    """
    if demo and not with_app:
        raise ConfigError("--demo needs the companion app (leave out --no-app)")
    check_inputs(input_spec, with_app, app_port)
    data_dir = data_dir.expanduser()
    env = None if database is None else {**os.environ, "EARMARK_DATABASE": database}
    model = vosk_model.expanduser() if vosk_model else paths.models_dir(data_dir) / DEFAULT_MODEL_NAME
    cloud = ["--data-dir", str(data_dir / "cloud")]
    if vosk_model is not None and not model.is_dir():
        raise ConfigError(f"{model}: no such Vosk model directory")
    with broker(data_dir) as port:
        address = f"127.0.0.1:{port}"
        notice = f"private broker at mqtt://{address} (loopback, this run only); cloud data in {data_dir / 'cloud'}"
        print(json.dumps({"type": "notice", "message": notice}), flush=True)  # noqa: T201
        # The consent service signs what it publishes; the device believes only that key
        # (written by review_opt_out/signing.py, in a process of its own as on a server).
        subprocess.run(_python("review_opt_out.cli", *cloud, "setup"), check=True, stdout=subprocess.DEVNULL, env=env)
        consent_key = data_dir / "cloud" / "keys" / "consent-signing.pub"
        enrolled = subprocess.run(
            _python("pipeline.cli", *cloud, "enroll", DEVICE_ID, HOUSEHOLD_ID),
            check=False,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        if enrolled.returncode != 0:  # its own message (an unreachable database, say) is on stderr
            raise ConfigError("could not enroll this machine's speaker in the cloud's database")
        run_args = [*cloud, "run", "--broker", address]
        for phrase in grammar:
            run_args += ["--grammar", phrase]
        if model.is_dir():
            run_args += ["--vosk-model", str(model)]
        else:
            notice = (
                f"no Vosk model at {model}: clips are stored without transcripts. "
                "Fetch the English default with `earmark models fetch-default`, or pass --vosk-model DIR."
            )
            print(json.dumps({"type": "notice", "message": notice}), flush=True)  # noqa: T201
        pipeline = subprocess.Popen(_python("pipeline.cli", *run_args), stdout=subprocess.PIPE, text=True, env=env)
        app = companion_app(data_dir / "cloud", address, app_port, env, demo) if with_app else contextlib.nullcontext()
        try:
            assert pipeline.stdout is not None  # noqa: S101 - PIPE was asked for
            if "pipeline_ready" not in pipeline.stdout.readline():
                raise ConfigError("the pipeline did not start; run with -v for its log")
            with app:
                speaker_config = _write_speaker_config(data_dir, input_spec, address, consent_key)
                command = _device_command(speaker_config, extra_device_args)
                status = subprocess.run(command, check=False).returncode
                if with_app and status == 0 and not exit_when_done and input_spec != "mic":
                    _stay(pipeline, input_spec)
                return status
        finally:
            pipeline.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                pipeline.wait(timeout=10)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `earmark up`."""
    parser.add_argument("--input", default="mic", help="mic (default), sample, a WAV file, or -")
    parser.add_argument(
        "--vosk-model", type=Path, help=f"Vosk model directory (default: DATA/models/{DEFAULT_MODEL_NAME})"
    )
    parser.add_argument("--realtime", action="store_true", help="pace file input like a microphone")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="a demo, not how Earmark runs: review on in the app, every clip sampled within 10 s, a reviewer account",
    )
    parser.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop everything when a file input ends (by default the app stays until Ctrl-C)",
    )
    parser.add_argument(
        "--app",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the consent service and its companion app (default on: spoken privacy commands need it)",
    )
    parser.add_argument(
        "--app-port",
        type=int,
        default=DEFAULT_APP_PORT,
        help=f"the companion app's HTTPS port (default {DEFAULT_APP_PORT})",
    )
    add_database_arguments(parser, "the cloud's database: postgresql://…")
    parser.add_argument("--reply-dir", type=Path, help="write spoken replies here as WAV instead of playing them")
    parser.add_argument("--language", choices=["en", "ko"], help="the speaker's sentences and replies (default en)")
    parser.add_argument(
        "--command-grammar",
        action="store_true",
        help="recognize only the speaker's own sentences (Vosk grammar mode): accurate on a small model,"
        " but nothing else is heard",
    )
