"""`earmark`: one command for everything, with one data directory and one way to fail.

    earmark [--data-dir DIR] [-v] COMMAND ...

`--data-dir` and `-v` may stand anywhere on the line (before or after COMMAND); the data
directory defaults to `EARMARK_DATA_DIR`, else `~/.local/share/earmark` (XDG), and every
command uses its part of it (`contract.paths`). Cloud commands run as their own process
(`python -m pipeline.cli`, ...): nothing here imports cloud code. Any failure is one
line on stderr and exit status 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from contract import paths
from contract.cli import PROG_ENV, OneLineParser, database_url, entry, run_cli

# name -> (what it does, how it runs). "module:" runs `python -m module` with the given
# leading arguments; "local:" calls a device-side entry point in this process.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("broker + pipeline + companion app + a speaker on this machine", "local:up"),
    "device": ("the speaker's front end: listen, devices, satellite", "local:device"),
    "doctor": ("check microphone, models, broker, TLS, credentials and consent", "local:doctor"),
    "speaker": ("the speaker service (what systemd runs on a Pi)", "local:speaker"),
    "flash": ("configure a Raspberry Pi OS image and write an SD card", "local:flash"),
    "provision": ("broker accounts, ACL and TLS for your speakers", "local:provision"),
    "pipeline": ("the cloud pipeline: run, enroll", "module:pipeline.cli"),
    "review": ("the consent service, the app and their admin commands", "module:review_opt_out.cli"),
    "audit": ("audit verify: recompute the audit log's hash chain", "module:review_opt_out.cli"),
    "models": ("list or fetch Vosk models", "module:pipeline.models"),
    "bench": ("front-end latency and CPU benchmark", "local:bench"),
    "speaker-bench": ("the speaker service's start time and memory", "local:speaker-bench"),
}
VERBOSE_AWARE = {"device", "doctor", "pipeline", "review", "audit"}


def split_globals(argv: Sequence[str]) -> tuple[Path | None, int, list[str]]:
    """Take `--data-dir DIR` and `-v` out of the line wherever they stand (not after `--`)."""
    data_dir: Path | None = None
    verbose = 0
    rest: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item == "--":
            rest += items[i:]
            break
        if item == "--data-dir" and i + 1 < len(items):
            data_dir, i = Path(items[i + 1]), i + 2
            continue
        if item.startswith("--data-dir="):
            data_dir, i = Path(item.split("=", 1)[1]), i + 1
            continue
        if item == "--verbose" or (item.startswith("-v") and set(item[1:]) == {"v"}):
            verbose += 1 if item == "--verbose" else len(item) - 1
            i += 1
            continue
        rest.append(item)
        i += 1
    return data_dir, verbose, rest


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {about}" for name, (about, _how) in COMMANDS.items()]
    return "\n".join(
        [
            "usage: earmark [--data-dir DIR] [-v] COMMAND ...",
            "",
            "Earmark, the privacy-first smart speaker. Commands:",
            *lines,
            "",
            "`earmark COMMAND --help` explains one. Data: --data-dir, else $EARMARK_DATA_DIR, "
            "else ~/.local/share/earmark.",
        ]
    )


def _up(argv: list[str], root: Path) -> int:
    from hardware import up

    parser = OneLineParser(prog="earmark up", description=up.__doc__.split("\n")[0] if up.__doc__ else None)
    up.add_arguments(parser)
    args = parser.parse_args(argv)
    extra = ["--realtime"] if args.realtime else []
    if args.reply_dir is not None:
        extra += ["--reply-dir", str(args.reply_dir)]
    if args.language is not None:
        extra += ["--language", args.language]
    grammar: list[str] = []
    if args.command_grammar:
        from firmware.assistant.intents import IntentMatcher
        from firmware.assistant.settings import Language

        grammar = IntentMatcher(Language(args.language or "en")).phrases()
    return up.up(
        args.input,
        root,
        args.vosk_model,
        extra,
        with_app=args.app,
        grammar=grammar,
        app_port=args.app_port,
        database=database_url(args, "earmark up"),
    )


def _local(name: str) -> Callable[[list[str]], int]:
    if name == "device":
        from firmware.cli import main as device

        return lambda argv: device(argv)
    if name == "doctor":
        from firmware.cli import main as device

        # `-v` belongs to earmark-device itself, before its `doctor`.
        return lambda argv: device([*(a for a in argv if a == "-v"), "doctor", *(a for a in argv if a != "-v")])
    if name == "speaker":
        from hardware.speaker import main as speaker

        return lambda argv: speaker(argv)
    if name == "flash":
        from hardware.flash import main as flash

        return lambda argv: flash(argv)
    if name == "provision":
        from hardware.broker_config import main as provision

        return lambda argv: provision(argv)
    if name == "bench":
        from firmware.bench import main as bench

        return lambda argv: bench(argv)
    from hardware.speaker_bench import main as speaker_bench

    return lambda argv: speaker_bench(argv)


def _run(argv: list[str]) -> int:
    explicit, verbose, rest = split_globals(argv)
    if rest[:1] in (["-h"], ["--help"]):
        print(_usage())  # noqa: T201 - this is the help
        return 0
    if not rest or rest[0] not in COMMANDS:
        problem = f"no command {rest[0]!r}" if rest else "give a command"
        print(f"earmark: error: {problem} (see earmark --help)", file=sys.stderr)  # noqa: T201 - the CLI boundary
        return 2
    name, args = rest[0], rest[1:]
    root = paths.data_root(explicit)
    os.environ[paths.ENV] = str(root)  # children and their children use the same directory
    os.environ[PROG_ENV] = f"earmark {name}"
    flags = ["-v"] * verbose if name in VERBOSE_AWARE else []
    how = COMMANDS[name][1]
    if how == "local:up":
        return run_cli("earmark up", lambda: _up(args, root), verbose)
    if how.startswith("local:"):
        return _local(how.removeprefix("local:"))([*flags, *args])
    module = how.removeprefix("module:")
    if module == "pipeline.models":
        lead = ["--dir", str(paths.models_dir(root))]
    else:
        lead = ["--data-dir", str(paths.cloud_dir(root))]
    lead += flags  # the command's own top-level -v, before any of its subcommands
    if name == "audit":
        lead.append("audit")
    # Replaces this process: signals, exit status and output are the command's own.
    os.execv(sys.executable, [sys.executable, "-m", module, *lead, *args])  # noqa: S606 - our own modules


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `earmark`."""
    return entry("earmark", _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
