"""`earmark device`: list microphones and run the front end, one JSON line per event."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

from contract import config, paths
from contract.audio import CHANNELS, SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES
from contract.cli import OneLineParser, entry, print_checks
from contract.errors import EarmarkError, report
from firmware.events import FrontEndEvent, SpeechEnded, UtteranceAudio, UtteranceReady
from firmware.settings import DeviceSettings, SpeakerFileSettings, load_settings

_LOGGER = logging.getLogger(__name__)


def _wake_word_arg(text: str) -> dict[str, Any]:
    """`alexa`, `alexa:0.6` or `/path/to/model.tflite:0.4`."""
    name, sep, threshold = text.rpartition(":")
    if sep and name:
        try:
            return {"model": name, "threshold": float(threshold)}
        except ValueError:
            pass
    return {"model": text}


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog, description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug logs on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("devices", help="list audio input devices, then output devices")
    doctor = sub.add_parser(
        "doctor",
        prog="earmark doctor" if prog == "earmark doctor" else None,
        help="check microphone, models, broker, TLS, credentials and consent",
    )
    doctor.add_argument("--config", type=Path, help="TOML settings file (e.g. /etc/earmark/device.toml)")
    listen = sub.add_parser("listen", help="run the front end and print one JSON line per event")
    listen.add_argument("--input", help="mic (default), sample, a WAV file, or - for raw 16 kHz S16_LE mono")
    listen.add_argument("--device", help="microphone index or name substring (with --input mic)")
    listen.add_argument(
        "--wake-word",
        action="append",
        type=_wake_word_arg,
        metavar="NAME[:THRESHOLD]",
        help="bundled name or model path, repeatable (default alexa)",
    )
    listen.add_argument("--save-dir", type=Path, help="write each utterance as a WAV here (off by default)")
    listen.add_argument("--config", type=Path, help="TOML settings file")
    listen.add_argument("--max-seconds", type=float, help="stop after this much input audio")
    listen.add_argument("--show-audio", action="store_true", help="also print a line per audio chunk (sizes only)")
    listen.add_argument("--realtime", action="store_true", help="pace file input at real time, like a microphone")
    listen.add_argument("--stream", action="store_true", help="stream each utterance to the cloud over MQTT")
    listen.add_argument("--broker", help="HOST:PORT of the MQTT broker (with --stream)")
    listen.add_argument("--device-id", help="this device's id (with --stream)")
    listen.add_argument("--household-id", help="this device's household (with --stream)")
    listen.add_argument("--state-dir", type=Path, help="where the last consent seen is kept")
    listen.add_argument("--consent-key", type=Path, help="the consent service's public key (PEM), with --stream")
    listen.add_argument("--reply-dir", type=Path, help="write each spoken reply here as WAV instead of playing it")
    listen.add_argument("--language", choices=["en", "ko"], help="the assistant's sentences and replies")
    listen.add_argument("--no-assistant", action="store_true", help="print transcripts only: no intents, no replies")
    _output_arguments(listen)
    listen.add_argument(
        "--result-timeout", type=float, default=30.0, help="seconds to wait for final transcripts at the end of input"
    )
    sat = sub.add_parser("satellite", help="serve Home Assistant as a Wyoming satellite (nothing goes to the cloud)")
    sat.add_argument("--config", type=Path, help="TOML settings file")
    sat.add_argument("--input", help="mic (default), sample or a WAV file (paced like a microphone, then silence)")
    sat.add_argument("--device", help="microphone index or name substring (with --input mic)")
    sat.add_argument("--wake-word", action="append", type=_wake_word_arg, metavar="NAME[:THRESHOLD]")
    sat.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    sat.add_argument("--port", type=int, help="TCP port (default 10700; 0: any free port)")
    sat.add_argument("--name", help="the name Home Assistant shows (default: the host name)")
    sat.add_argument("--area", help="suggested Home Assistant area")
    sat.add_argument("--no-zeroconf", action="store_true", help="do not advertise _wyoming._tcp")
    _output_arguments(sat)
    sat.add_argument("--state-dir", type=Path, help="where the pinned Home Assistant and a pause are kept")
    pair = sub.add_parser(
        "satellite-pair",
        help="forget the Home Assistant the satellite is pinned to: the next one to run it is pinned (works live)",
    )
    pair.add_argument(
        "--config", type=Path, help=f"TOML settings file, for its state_dir (default: {_SERVICE_CONFIG} if present)"
    )
    pair.add_argument("--state-dir", type=Path, help="the satellite's state directory")
    pair.add_argument("--to", metavar="ADDR", help="pin this Home Assistant address now instead of the next to come")
    return parser


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    """The loudspeaker's flags: the `[output]` table both modes read."""
    parser.add_argument("--sound-device", help="output device index or name substring")
    parser.add_argument("--no-sounds", action="store_true", help="no wake, done, error or timer sounds")


def _output_overrides(args: argparse.Namespace, overrides: dict[str, Any]) -> None:
    output: dict[str, Any] = {}
    if args.sound_device:
        output["sound_device"] = args.sound_device
    if args.no_sounds:
        output["sounds"] = False
    if output:
        overrides["output"] = output


_SERVICE_CONFIG = Path("/etc/earmark/device.toml")  # what install.sh gives earmark-speaker


def _pair(args: argparse.Namespace) -> int:
    """Release the pin: needs a shell on the speaker, which a stranger on the LAN has not."""
    from firmware.satellite.control import Control, host_of

    overrides: dict[str, Any] = {} if args.state_dir is None else {"state_dir": args.state_dir}
    # On a flashed speaker the service's file names the state directory it really uses.
    path = args.config if args.config is not None or not _SERVICE_CONFIG.exists() else _SERVICE_CONFIG
    settings = config.load_settings(SpeakerFileSettings, path, **overrides)
    try:
        pin = None if args.to is None else host_of(args.to)
    except ValueError as err:
        raise config.ConfigError(f"--to {args.to!r} is not an IP address") from err
    previous = Control.open(settings.state_dir).release(pin)
    released = f"released {previous}" if previous else "no Home Assistant was pinned"
    then = f"only {pin} may run the speaker" if pin else "the next Home Assistant to run the speaker is pinned"
    print(f"{released}: {then} ({settings.state_dir.expanduser()})")
    return 0


def _satellite(args: argparse.Namespace) -> int:
    """Serve Home Assistant until SIGINT or SIGTERM, one JSON line per event."""
    import signal

    from firmware.device import assemble
    from firmware.satellite.settings import DeviceMode

    overrides: dict[str, Any] = {"mode": "home_assistant"}
    for key in ("input", "device"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.wake_word:
        overrides["wake"] = {"words": args.wake_word}
    satellite: dict[str, Any] = {key: getattr(args, key) for key in ("host", "name", "area") if getattr(args, key)}
    if args.state_dir is not None:
        overrides["state_dir"] = args.state_dir
    if args.port is not None:  # 0 is a port too: any free one
        satellite["port"] = args.port
    if args.no_zeroconf:
        satellite["zeroconf"] = False
    if satellite:
        overrides["satellite"] = satellite
    _output_overrides(args, overrides)
    # The speaker's own file also holds tables only the service knows ([gpio]).
    settings = config.load_settings(SpeakerFileSettings, args.config, **overrides)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    printer = _Printer(sys.stdout)
    device = assemble(settings, DeviceMode.HOME_ASSISTANT)
    try:

        def on_event(event: FrontEndEvent) -> None:
            if not isinstance(event, UtteranceAudio):
                printer.line(json.dumps(event.summary()))

        device.frontend.subscribe(on_event)
        assert device.link is not None  # noqa: S101 - Home Assistant mode has one
        printer.line(json.dumps({"type": "satellite_listening", "name": device.link.name, "port": device.link.port}))
        device.run(keep_going=lambda: not stop.is_set())
        return 0
    finally:
        device.close()


def _save(save_dir: Path, event: UtteranceReady) -> Path:
    save_dir.mkdir(parents=True, exist_ok=True)
    path = save_dir / f"{event.utterance_id}.wav"
    partial = path.with_suffix(".wav.part")
    with wave.open(str(partial), "wb") as out:
        out.setnchannels(CHANNELS)
        out.setsampwidth(SAMPLE_WIDTH_BYTES)
        out.setframerate(SAMPLE_RATE_HZ)
        out.writeframes(event.audio)
    partial.replace(path)  # a crash never leaves a half-written file under the final name
    return path


class _Printer:
    """One JSON line per event or result; two threads write, so lines are locked."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()


def listen(
    settings: DeviceSettings,
    out: TextIO,
    *,
    max_seconds: float | None = None,
    show_audio: bool = False,
    realtime: bool = False,
    stream: bool = False,
    result_timeout_seconds: float = 30.0,
    reply_dir: Path | None = None,
) -> int:
    """Run the front end over the configured input until it ends; return the exit status."""
    from firmware.device import assemble
    from firmware.satellite.settings import DeviceMode

    printer = _Printer(out)
    device = assemble(settings, DeviceMode.CLOUD if stream else None, on_line=printer.line, reply_dir=reply_dir)
    try:
        utterances: list[UUID] = []
        # A file read faster than real time would open streams faster than the cloud serves
        # them (it admits two per device at once): after each request, wait for its receipt.
        throttle = device.session is not None and not realtime and settings.input != "mic"
        ended: list[UUID] = []

        def on_event(event: FrontEndEvent) -> None:
            if isinstance(event, SpeechEnded) and throttle:
                ended.append(event.utterance_id)
            if isinstance(event, UtteranceReady):
                utterances.append(event.utterance_id)
            if isinstance(event, UtteranceAudio) and not show_audio:
                return
            line = event.summary()
            if isinstance(event, UtteranceReady) and settings.save_dir is not None:
                line["saved_to"] = str(_save(settings.save_dir, event))
            printer.line(json.dumps(line))

        def wait_for_the_cloud() -> None:
            if ended and device.session is not None:
                device.session.uplink.wait_settled(ended, result_timeout_seconds)
                ended.clear()

        device.frontend.subscribe(on_event)
        device.run(pace=realtime, max_seconds=max_seconds, on_frame=wait_for_the_cloud)
        session = device.session
        if session is not None:
            # An utterance another speaker answers gets no transcript here.
            cancelled = set(session.uplink.stats.cancelled_ids)
            missing = session.uplink.wait_for_finals(set(utterances) - cancelled, result_timeout_seconds)
            if missing:
                printer.line(json.dumps({"type": "results_missing", "utterance_ids": sorted(map(str, missing))}))
                return 3
            if session.assistant is not None and not session.assistant.wait_idle(result_timeout_seconds):
                printer.line(json.dumps({"type": "answers_missing"}))
                return 3
        return 0
    finally:
        device.close()


def main(argv: Sequence[str] | None = None, prog: str = "earmark device") -> int:
    """Entry point of `earmark device` (`prog`: the name it reports under)."""
    return entry(prog, lambda args: _main(args, prog), argv)


def _main(argv: list[str], prog: str) -> int:
    args = _parser(prog).parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "devices":
            from firmware.audio.mic import list_input_devices, list_output_devices

            inputs, outputs = list_input_devices(), list_output_devices()
            # stdout stays JSON lines for scripts; a person is told on stderr why it is empty.
            if not inputs:
                print(f"{prog}: no audio input devices found (is a microphone connected?)", file=sys.stderr)
            if not outputs:
                print(f"{prog}: no audio output devices found (is a loudspeaker connected?)", file=sys.stderr)
            for device in inputs:
                print(
                    json.dumps(
                        {
                            "index": device.index,
                            "name": device.name,
                            "max_input_channels": device.max_input_channels,
                            "default_sample_rate_hz": device.default_sample_rate_hz,
                        }
                    )
                )
            for device in outputs:  # for output.sound_device
                print(json.dumps({"index": device.index, "name": device.name, "output": True}))
            return 0
        if args.command == "doctor":
            from contract.config import load_settings as load_any
            from firmware.doctor import DoctorSettings, run_checks

            path = args.config
            if path is None and paths.local_speaker_config().is_file():
                # `earmark up` runs a speaker here: check that one, not a default nobody runs.
                path = paths.local_speaker_config()
                print(f"checking the speaker `earmark up` runs ({path}); --config FILE checks another")
            return print_checks(run_checks(load_any(DoctorSettings, path)))
        if args.command == "satellite":
            return _satellite(args)
        if args.command == "satellite-pair":
            return _pair(args)
        overrides: dict[str, Any] = {}
        if args.input is not None:
            overrides["input"] = args.input
        if args.device is not None:
            overrides["device"] = args.device
        if args.save_dir is not None:
            overrides["save_dir"] = args.save_dir
        if args.wake_word:
            overrides["wake"] = {"words": args.wake_word}
        if args.device_id or args.household_id:
            overrides["identity"] = {"device_id": args.device_id, "household_id": args.household_id}
        if args.broker:
            host, _, port = args.broker.rpartition(":")
            overrides["mqtt"] = {"host": host or "127.0.0.1", "port": port}
        if args.state_dir is not None:
            overrides["state_dir"] = args.state_dir
        if args.consent_key is not None:
            overrides["consent_public_key"] = args.consent_key
        assistant: dict[str, Any] = {}
        if args.language:
            assistant["language"] = args.language
        if args.no_assistant:
            assistant["enabled"] = False
        if assistant:
            overrides["assistant"] = assistant
        _output_overrides(args, overrides)
        settings = load_settings(args.config, **overrides)
        return listen(
            settings,
            sys.stdout,
            max_seconds=args.max_seconds,
            show_audio=args.show_audio,
            realtime=args.realtime,
            stream=args.stream,
            result_timeout_seconds=args.result_timeout,
            reply_dir=args.reply_dir,
        )
    except EarmarkError as err:
        return report(prog, err)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
