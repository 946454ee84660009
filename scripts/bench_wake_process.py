"""`python -m scripts.bench_wake_process`: the whole speaker process against bare wake-word engines.

Reported, never asserted (issue 27). In one run, four processes hear the same audio on
their stdin, paced like a microphone (one 80 ms frame per tick, all four fed on the same
tick): the bundled "Alexa" request every 20 s between hiss and silence.

- **speaker, two-stage** (the default): `earmark-speaker` as systemd runs it, reading raw
  PCM on stdin, with its uplink to a loopback mosquitto, VAD, pre-roll and LEDs (gpiozero's
  mock pins);
- **speaker, openWakeWord alone** (`wake.words[].detection = "openwakeword"`, the previous
  release's detection);
- **bare pymicro-wakeword**: its own engine and features, nothing else;
- **bare openWakeWord**: `openwakeword.Model` over the same model files.

Each process's CPU seconds come from the kernel (wait4), and those from the first frame
on from /proc (what streaming costs, without start-up), its peak RSS from VmHWM just
before its input ends, and a speaker's seconds from exec to READY=1 from its notify socket.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import IO, Any

from contract.audio import FRAME_BYTES, FRAME_SECONDS
from contract.cli import OneLineParser, entry
from scripts.bench_frontend import program_audio
from scripts.speaker_bench import _broker, _write_config

_BARE_MICRO = textwrap.dedent(
    """
    import sys
    from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model
    model, features, wakes, at, last = MicroWakeWord.from_builtin(Model.ALEXA), MicroWakeWordFeatures(), 0, 0, -1000
    while chunk := sys.stdin.buffer.read(2560):
        for feature in features.process_streaming(chunk):
            at += 1  # 10 ms each; a wake within 1 s of the last is the same one
            if model.process_streaming(feature) and at - last > 100:
                wakes, last = wakes + 1, at
    print(wakes)
    """
)
_BARE_OPENWAKEWORD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from scripts.reference_wake import load_reference_model
    from firmware.wake import WakeSettings, resolve_models
    model, wakes, run = load_reference_model(resolve_models(WakeSettings())), 0, 0
    while chunk := sys.stdin.buffer.read(2560):
        score = model.predict(np.frombuffer(chunk, dtype="<i2"))["alexa"]
        run = run + 1 if score >= 0.5 else 0
        wakes += run == 2
    print(wakes)
    """
)


class _Runner:
    """One process fed on stdin; its rusage when it ends, and READY time for a speaker."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], notify: str | None) -> None:
        self.name = name
        self.notify = notify
        self.ready_seconds: float | None = None
        self.cpu_at_first_frame = 0.0
        self._listener: socket.socket | None = None
        if notify is not None:
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._listener.bind("\0" + notify)
            env = {**env, "NOTIFY_SOCKET": "@" + notify}
        self.started = time.perf_counter()
        self.log = Path(tempfile.mkstemp(prefix="wake-bench-", suffix=".log")[1])
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self.stdin: IO[bytes] = self.process.stdin  # type: ignore[assignment]

    def wait_ready(self, timeout_seconds: float) -> None:
        if self._listener is None:
            return
        self._listener.settimeout(timeout_seconds)
        while self.ready_seconds is None:
            if "READY=1" in self._listener.recv(4096).decode().split("\n"):
                self.ready_seconds = time.perf_counter() - self.started

    def write(self, frame: bytes) -> None:
        try:
            self.stdin.write(frame)
            self.stdin.flush()
        except BrokenPipeError:
            raise SystemExit(f"{self.name} ended early: {self.log.read_text(errors='replace')[-2000:]}") from None

    def cpu_seconds_so_far(self) -> float:
        """This process's CPU time until now (utime + stime from /proc)."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def high_water_mib(self) -> float:
        """Peak resident memory since exec (VmHWM). wait4's ru_maxrss would also count the
        pages the child shared with this (larger) process between fork and exec."""
        with open(f"/proc/{self.process.pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024

    def finish(self) -> dict[str, Any]:
        peak_rss_mib = self.high_water_mib()  # the input is all in; what follows is exit
        self.stdin.close()
        output = self.process.stdout.read().decode() if self.process.stdout else ""
        _pid, status, usage = os.wait4(self.process.pid, 0)
        if self._listener is not None:
            self._listener.close()
        return {
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "system_cpu_seconds": usage.ru_stime,
            "cpu_seconds_streaming": usage.ru_utime + usage.ru_stime - self.cpu_at_first_frame,
            "peak_rss_mib": peak_rss_mib,
            "ready_seconds": self.ready_seconds,
            "exit_code": os.waitstatus_to_exitcode(status),
            "bare_wakes": output.strip() if self.notify is None else None,
        }


def _speaker_config(workdir: Path, port: int | None, detection: str) -> Path:
    config = _write_config(workdir, port, audio_input="-")
    config.write_text(config.read_text() + f'[wake]\nwords = [{{ model = "alexa", detection = "{detection}" }}]\n')
    return config


def run(seconds: float) -> dict[str, Any]:
    audio = program_audio(seconds / 60)
    frames = [audio[i : i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES)]
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONPATH": str(Path.cwd())}
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp, _broker(Path(tmp)) as port:
        runners = []
        for detection in ("two_stage", "openwakeword"):
            workdir = Path(tmp) / detection
            workdir.mkdir()
            config = _speaker_config(workdir, port, detection)
            notify = f"earmark-wake-bench-{os.getpid()}-{detection}"
            command = [python, "-m", "hardware.speaker", "--config", str(config)]
            runners.append(_Runner(f"speaker, {detection}", command, env, notify))
        runners.append(_Runner("bare pymicro-wakeword", [python, "-c", _BARE_MICRO], env, None))
        runners.append(_Runner("bare openWakeWord", [python, "-c", _BARE_OPENWAKEWORD], env, None))
        for runner in runners:
            runner.wait_ready(120.0)
        time.sleep(2.0)  # the bare engines load their models meanwhile
        for runner in runners:
            runner.cpu_at_first_frame = runner.cpu_seconds_so_far()
        tick = time.monotonic()
        for frame in frames:  # paced like a microphone: one frame per 80 ms, to all four at once
            for runner in runners:
                runner.write(frame)
            tick += FRAME_SECONDS
            time.sleep(max(0.0, tick - time.monotonic()))
        results = {runner.name: runner.finish() for runner in runners}
    bare = results["bare pymicro-wakeword"]
    for result in results.values():
        result["cpu_vs_bare_pymicro_wakeword"] = result["cpu_seconds"] / bare["cpu_seconds"]
        result["streaming_cpu_vs_bare_pymicro_wakeword"] = (
            result["cpu_seconds_streaming"] / bare["cpu_seconds_streaming"]
        )
    return {"audio_seconds": len(frames) * FRAME_SECONDS, "processes": results}


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    return entry("bench_wake_process", _main, argv)


def _main(argv: list[str]) -> int:
    parser = OneLineParser(prog="python -m scripts.bench_wake_process", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="audio to stream (default 120)")
    parser.add_argument("--out", type=Path, default=Path("reports/wake_process_bench.json"))
    args = parser.parse_args(argv)
    report = run(args.seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    for name, result in report["processes"].items():
        print(
            f"{name:26} CPU {result['cpu_seconds']:5.2f} s ({result['cpu_vs_bare_pymicro_wakeword']:.2f}x bare"
            f" pymicro-wakeword; streaming alone {result['cpu_seconds_streaming']:5.2f} s,"
            f" {result['streaming_cpu_vs_bare_pymicro_wakeword']:.2f}x), peak RSS {result['peak_rss_mib']:5.1f} MiB,"
            f" ready {result['ready_seconds'] or 0:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
