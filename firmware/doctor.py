"""`earmark device doctor`: check everything a speaker needs and say how to fix what is wrong."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

from contract import topics
from contract.cli import Check
from contract.errors import EarmarkError
from contract.mqtt import build_client
from firmware.satellite.settings import DeviceMode, on_every_interface
from firmware.settings import DeviceSettings, SpeakerFileSettings

DoctorSettings = SpeakerFileSettings  # the name the doctor's callers know


def _microphone(settings: DeviceSettings) -> Check:
    from firmware.audio.mic import MicrophoneSource, list_input_devices

    if settings.input != "mic":  # what the speaker hears is not a microphone: say what it is
        if settings.input == "sample":
            return Check("microphone", True, "not used: the speaker hears the bundled request (input = sample)")
        if settings.input == "-":
            return Check("microphone", True, "not used: the speaker hears raw PCM on its stdin (input = -)")
        heard = Path(settings.input).expanduser()
        if heard.is_file():
            return Check("microphone", True, f"not used: the speaker hears {heard} (input)")
        return Check("microphone", False, f"{heard}: no such audio file (input)", "set input to mic, sample or a WAV")
    try:
        names = [d.name for d in list_input_devices()]
        source = MicrophoneSource(settings.device)
        try:
            frame = next(iter(source.frames()))
        finally:
            source.close()
        return Check(
            "microphone", True, f"{source.name} gives 16 kHz mono ({len(frame)} bytes per frame); inputs: {names}"
        )
    except (EarmarkError, OSError, StopIteration) as err:
        return Check(
            "microphone",
            False,
            str(err),
            "plug in the microphone, check `arecord -l`, and set `device` to a name from `earmark device devices`"
            " (with a ReSpeaker HAT: the dtoverlay in /boot/firmware/config.txt, then reboot)",
        )


def _models(settings: DeviceSettings) -> Check:
    from firmware.wake import WakeWordDetector

    try:
        detector = WakeWordDetector(settings.wake)
    except EarmarkError as err:
        return Check(
            "wake word models",
            False,
            str(err),
            "pip install 'earmark[device]' (pyopen-wakeword and pymicro-wakeword ship them), or point"
            " wake.model_dir / wake.micro_model_dir at a folder holding them",
        )
    return Check("wake word models", True, f"loaded {detector.describe()}")


def _tcp(settings: DeviceSettings) -> Check:
    address = f"{settings.mqtt.host}:{settings.mqtt.port}"
    try:
        with socket.create_connection((settings.mqtt.host, settings.mqtt.port), timeout=5):
            return Check("broker reachable", True, address)
    except OSError as err:
        return Check(
            "broker reachable",
            False,
            f"{address}: {err}",
            "check the network and the [mqtt] host and port (the speaker of `earmark up`: its broker runs only"
            " while `earmark up` does)",
        )


def _tls(settings: DeviceSettings) -> Check:
    if not settings.mqtt.tls:
        return Check("TLS", True, "off (use mqtts for any broker outside this machine)")
    context = ssl.create_default_context(cafile=str(settings.mqtt.ca_file) if settings.mqtt.ca_file else None)
    try:
        with (
            socket.create_connection((settings.mqtt.host, settings.mqtt.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=settings.mqtt.host) as tls,
        ):
            return Check("TLS", True, f"{tls.version()}, certificate verified")
    except (OSError, ssl.SSLError) as err:
        return Check(
            "TLS", False, str(err), "install the broker's CA as mqtt.ca_file and use the name on its certificate"
        )


def _mqtt(settings: DeviceSettings) -> list[Check]:
    if settings.identity is None:
        return [Check("identity", False, "no device id", "set identity.device_id and identity.household_id")]
    identity = settings.identity
    client: Any = build_client(settings.mqtt, f"{identity.device_id}-doctor")
    connected = threading.Event()
    consent: list[bytes] = []
    result: dict[str, Any] = {}

    def on_connect(c: Any, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
        result["reason"] = reason_code
        connected.set()
        if not reason_code.is_failure:
            c.subscribe(topics.consent(identity.household_id), qos=1)

    client.on_connect = on_connect
    client.on_message = lambda _c, _u, m: consent.append(bytes(m.payload))
    try:
        client.connect(settings.mqtt.host, settings.mqtt.port, 10)
    except OSError as err:
        return [Check("credentials", False, str(err), "fix the broker checks above first")]
    client.loop_start()
    try:
        if not connected.wait(10) or result["reason"].is_failure:
            why = result.get("reason", "no answer")
            return [
                Check(
                    "credentials",
                    False,
                    f"broker said: {why}",
                    "check mqtt.username and the password in credentials.env",
                )
            ]
        deadline = time.monotonic() + 3.0  # a retained message arrives right after subscribing
        while not consent and time.monotonic() < deadline:
            time.sleep(0.05)
        checks = [Check("credentials", True, f"signed in as {settings.mqtt.username or identity.device_id}")]
        if consent:
            checks.append(_signed_consent(settings, identity.household_id, consent[-1]))
        else:
            checks.append(
                Check(
                    "consent message",
                    False,
                    "no retained consent message for this household (recordings are sent as 'no review')",
                    "enroll the household with the consent service (earmark review add-household) so it publishes one",
                )
            )
        return checks
    finally:
        client.loop_stop()
        client.disconnect()


def _consent_key(settings: DeviceSettings) -> Check:
    from contract.consent_signature import key_id, load_public_key

    fix = (
        "copy the consent service's public key (earmark review setup prints its path) to the device"
        " and set consent_public_key (earmark flash does this)"
    )
    if settings.consent_public_key is None:
        return Check("consent key", False, "no consent_public_key: every clip is sent as 'no review'", fix)
    try:
        key = load_public_key(settings.consent_public_key.expanduser())
    except EarmarkError as err:
        return Check("consent key", False, str(err), fix)
    return Check("consent key", True, f"consent messages must be signed by key {key_id(key)}")


def _signed_consent(settings: DeviceSettings, household_id: str, payload: bytes) -> Check:
    from contract.consent_signature import load_public_key, verify_consent

    if settings.consent_public_key is None:
        return Check("consent message", False, "present, but there is no key to verify it", "see consent key above")
    try:
        state = verify_consent(payload, load_public_key(settings.consent_public_key.expanduser()), household_id)
    except EarmarkError as err:
        return Check(
            "consent message",
            False,
            f"the retained consent message is not one the device believes ({err.code})",
            "check that consent_public_key is the key of the consent service this broker serves",
        )
    return Check("consent message", True, f"signed, version {state.consent_version}")


def _mode(settings: DeviceSettings) -> Check:
    if settings.mode is DeviceMode.HOME_ASSISTANT:
        sat = settings.satellite
        return Check(
            "mode",
            True,
            f"home_assistant: after the wake word, audio goes to the Home Assistant that connects on port {sat.port}"
            " (Wyoming); nothing is sent to the Earmark cloud",
        )
    broker = f"{settings.mqtt.host}:{settings.mqtt.port}"
    return Check("mode", True, f"cloud: after the wake word, audio streams to the Earmark cloud at {broker}")


def _speaker(settings: DeviceSettings) -> Check:
    from firmware.audio.output import Player

    try:
        player = Player(settings.output.sound_device)
    except EarmarkError as err:
        return Check("speaker", False, str(err), "set output.sound_device to an output `earmark device devices` lists")
    try:
        if player.available:
            return Check("speaker", True, f"sounds and replies play on {player.device_name}")
        return Check(
            "speaker",
            False,
            "no output device: Home Assistant will not be asked for spoken replies",
            "connect a speaker (ReSpeaker HAT: its headphone jack or JST speaker port) and check `aplay -l`",
        )
    finally:
        player.close()


def _satellite_port(settings: DeviceSettings) -> Check:
    sat = settings.satellite
    probe_host = "127.0.0.1" if on_every_interface(sat.host) else sat.host
    try:
        with socket.create_connection((probe_host, sat.port), timeout=2) as conn:
            conn.sendall(b'{"type": "describe"}\n')
            answer = conn.makefile("rb").readline(16384)
        if b'"info"' in answer:
            return Check("satellite port", True, f"{sat.host}:{sat.port}: the speaker service answers describe")
    except OSError:
        pass
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((sat.host, sat.port))
        return Check("satellite port", True, f"{sat.host}:{sat.port} is free; the speaker service will listen there")
    except OSError as err:
        return Check(
            "satellite port", False, f"{sat.host}:{sat.port}: {err}", "stop what uses the port or set satellite.port"
        )


def run_checks(settings: DeviceSettings) -> list[Check]:
    """Every check, in the order a person would fix them."""
    checks = [_mode(settings), _microphone(settings), _models(settings)]
    if settings.mode is DeviceMode.HOME_ASSISTANT:
        return [*checks, _speaker(settings), _satellite_port(settings)]
    checks += [_consent_key(settings), _tcp(settings)]
    if checks[-1].ok:
        checks.append(_tls(settings))
        if checks[-1].ok:
            checks += _mqtt(settings)
    return checks
