"""`python scripts/speaker_bench.py`: what the speaker service costs to start and to hold in memory.

Reported, never asserted. It starts the real `earmark-speaker` (one wake word, VAD,
uplink, status LEDs through gpiozero's mock pins, a consent key) on the bundled
request, the way systemd does: a NOTIFY_SOCKET it listens on for READY=1. Per run it
reports seconds from exec to READY, peak RSS (the kernel's high-water mark, from
wait4) and CPU. A run with `-X importtime` and one process that imports the same
top-level packages one by one give import time and resident memory by component.
Runs on a Pi, in the arm64 stand-in (copied into the root: it is measuring code, not
in the speaker's wheel), and here: it needs only the `device` extra and `contract`
(a mosquitto on PATH, when there is one, gives the uplink a broker to talk to).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from contract.cli import OneLineParser, entry

_READY_TIMEOUT_SECONDS = 600.0  # emulated arm64 is ~50x slower than this machine
# Our own packages are grouped as "earmark" in the breakdown.
_OWN = {"contract", "firmware", "hardware"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _broker(workdir: Path) -> Iterator[int | None]:
    """A loopback mosquitto for the uplink, when one is installed; else None."""
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        yield None
        return
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _write_config(workdir: Path, port: int | None, audio_input: str = "sample") -> Path:
    from nacl.signing import SigningKey

    from contract.consent_signature import public_key_pem

    key = workdir / "consent.pub"
    key.write_text(public_key_pem(bytes(SigningKey.generate().verify_key)))
    config = workdir / "speaker.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            input = "{audio_input}"
            state_dir = "{workdir / "state"}"
            consent_public_key = "{key}"
            [identity]
            device_id = "bench-speaker"
            household_id = "bench-home"
            [mqtt]
            port = {port or _free_port()}
            [gpio]
            enabled = true
            """
        )
    )
    return config


def _run_once(
    python: str, config: Path, workdir: Path, extra_env: dict[str, str], source: Path | None
) -> dict[str, Any]:
    """One start to READY and on to the end of the input; times, peak RSS, CPU, stderr."""
    # An abstract socket (systemd's "@" form): no path, so it also works under proot,
    # which does not translate the address of a datagram sendto().
    notify = f"earmark-speaker-bench-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + notify)
        env = {**os.environ, "NOTIFY_SOCKET": "@" + notify, "GPIOZERO_PIN_FACTORY": "mock", **extra_env}
        if source is not None:
            env["PYTHONPATH"] = str(source)
        started = time.perf_counter()
        # stderr to a file, not a pipe: nobody reads a pipe while waiting for READY, and
        # a chatty speaker would block on a full one.
        log = workdir / "speaker.stderr"
        with open(log, "wb") as stderr_file:
            process = subprocess.Popen(
                [python, "-m", "hardware.speaker", "--config", str(config)],
                env=env,
                cwd=source,
                stdout=subprocess.DEVNULL,
                stderr=stderr_file,
            )
        ready_seconds = None
        exited: tuple[int, Any] | None = None  # (wait status, rusage) once it is gone
        listener.settimeout(0.2)
        deadline = started + _READY_TIMEOUT_SECONDS
        while ready_seconds is None and time.perf_counter() < deadline:
            try:
                message = listener.recv(4096).decode()
            except TimeoutError:
                if exited is not None:
                    break  # it ended and nothing more is queued: it never became ready
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid != 0:
                    exited = (status, usage)
                continue
            if "READY=1" in message.split("\n"):
                ready_seconds = time.perf_counter() - started
        if exited is None:
            _pid, status, usage = os.wait4(process.pid, 0)
            exited = (status, usage)
        stderr = log.read_text(errors="replace")
        status, usage = exited
        process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "ready_seconds": ready_seconds,
        "exit_code": process.returncode,
        "peak_rss_mib": usage.ru_maxrss / 1024,  # Linux reports KiB
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "stderr": stderr,
    }


def _import_breakdown(stderr: str) -> tuple[list[str], dict[str, float]]:
    """Modules in the order their imports completed, and the seconds spent in each package.

    Seconds are the `self` times of a package's modules, so they add up to the total
    and a package is not charged for what it imports from others.
    """
    order: list[str] = []
    seconds: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, _cumulative, raw_name = line[len("import time:") :].split("|")
        name = raw_name.strip()
        top = name.split(".")[0]
        group = "earmark" if top in _OWN else top
        order.append(name)
        seconds[group] = seconds.get(group, 0.0) + int(self_us) / 1e6
    return order, seconds


def _rss_by_component(python: str, order: Sequence[str], source: Path | None) -> dict[str, float]:
    """Resident MiB added by each package, importing the speaker's modules in its order.

    Loading the models and running are not imports: what the total adds beyond these is
    the interpreters, their tensors and the audio path.
    """
    script = textwrap.dedent(
        """
        import importlib, json, resource, sys
        def rss():
            try:
                with open("/proc/self/status") as status:
                    return next(int(l.split()[1]) for l in status if l.startswith("VmRSS:")) / 1024
            except OSError:  # no /proc under proot: the high-water mark (imports only grow;
                # it starts at the forking parent's size, so "python itself" reads high)
                return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        added, before = {"python itself": rss()}, rss()
        for name in json.loads(sys.argv[1]):
            try:
                importlib.import_module(name)
            except BaseException:  # -X importtime also lists imports that failed (platform probes)
                continue
            now = rss()
            top = name.split(".")[0]
            group = "earmark" if top in ("contract", "firmware", "hardware") else top
            added[group] = added.get(group, 0.0) + now - before
            before = now
        print(json.dumps(added))
        """
    )
    done = subprocess.run(
        [python, "-c", script, json.dumps(list(order))], capture_output=True, text=True, check=False, cwd=source
    )
    if done.returncode != 0:
        raise RuntimeError(f"measuring RSS by component failed: {done.stderr[-1500:]}")
    added: dict[str, float] = json.loads(done.stdout)
    return added


def bench(python: str, runs: int, source: Path | None = None, audio_input: str = "sample") -> dict[str, Any]:
    """Start the speaker `runs` times, then once more for the import breakdown."""
    with tempfile.TemporaryDirectory(prefix="earmark-speaker-bench-") as tmp:
        workdir = Path(tmp)
        with _broker(workdir) as port:
            config = _write_config(workdir, port, audio_input)
            results = [_run_once(python, config, workdir, {}, source) for _ in range(runs)]
            failed = [r for r in results if r["exit_code"] != 0 or r["ready_seconds"] is None]
            if failed:
                raise RuntimeError(f"earmark-speaker failed: {failed[0]['stderr'][-2000:]}")
            traced = _run_once(python, config, workdir, {"PYTHONPROFILEIMPORTTIME": "1"}, source)
        order, import_seconds = _import_breakdown(traced["stderr"])
        later = results[1:] or results
        return {
            "python": python,
            "broker": port is not None,
            "runs": runs,
            "first_ready_seconds": results[0]["ready_seconds"],
            "ready_seconds_median": statistics.median(r["ready_seconds"] for r in later),
            "peak_rss_mib_max": max(r["peak_rss_mib"] for r in results),
            "cpu_seconds_median": statistics.median(r["cpu_seconds"] for r in later),
            "import_seconds_total": sum(import_seconds.values()),
            "import_seconds": dict(sorted(import_seconds.items(), key=lambda kv: -kv[1])),
            "rss_mib_by_component": _rss_by_component(python, order, source),
        }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return entry("speaker_bench.py", _main, argv)


def _main(argv: list[str]) -> int:
    parser = OneLineParser(prog="speaker_bench.py", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", default=sys.executable, help="the interpreter whose install is measured")
    parser.add_argument("--source", type=Path, help="run the speaker from this checkout (e.g. an older release)")
    parser.add_argument("--input", default="sample", help="what the speaker hears: sample (4.5 s) or a WAV path")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = bench(args.python, args.runs, args.source, args.input)
    print(f"READY: first {result['first_ready_seconds']:.3f} s, median {result['ready_seconds_median']:.3f} s")
    print(f"peak RSS {result['peak_rss_mib_max']:.1f} MiB; CPU per run {result['cpu_seconds_median']:.2f} s")
    slow = ", ".join(f"{k} {v:.3f}" for k, v in result["import_seconds"].items() if v >= 0.005)
    print(f"imports {result['import_seconds_total']:.3f} s: {slow}")
    print("RSS MiB added:", ", ".join(f"{k} {v:.1f}" for k, v in result["rss_mib_by_component"].items() if v >= 0.5))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
