"""`earmark`: one command for everything, with one data directory and one way to fail.

    earmark [--data-dir DIR] [-v] COMMAND ...

`--data-dir` and `-v` may stand anywhere on the line (before or after COMMAND); the data
directory defaults to `EARMARK_DATA_DIR`, else `~/.local/share/earmark` (XDG), and every
command uses its part of it (`contract.paths`). Each command's module is imported only
when it runs, so `earmark device` never loads the cloud, and on a speaker (whose wheel
holds no cloud) a cloud command says so. Any failure is one line on stderr and exit
status 2.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from contract import paths
from contract.cli import OneLineParser, database_url, entry, run_cli
from contract.config import ConfigError

# name -> (what it does, the module whose `main(argv)` runs it)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("broker + pipeline + companion app + a speaker on this machine", "earmark.up"),
    "device": ("the speaker's front end: listen, devices, satellite", "firmware.cli"),
    "doctor": ("check microphone, models, broker, TLS, credentials and consent", "firmware.cli"),
    "speaker": ("the speaker service (what systemd runs on a Pi)", "hardware.speaker"),
    "flash": ("configure a Raspberry Pi OS image and write an SD card", "hardware.flash"),
    "provision": ("broker accounts, ACL and TLS for your speakers", "hardware.broker_config"),
    "pipeline": ("the cloud pipeline: run, enroll", "pipeline.cli"),
    "review": ("the consent service, the app and their admin commands", "review_opt_out.cli"),
    "audit": ("audit verify: recompute the audit log's hash chain", "review_opt_out.cli"),
    "models": ("list or fetch Vosk models", "pipeline.models"),
}
VERBOSE_AWARE = {"device", "doctor", "pipeline", "review", "audit"}
_CLOUD = ("pipeline", "review_opt_out")


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
    _module_of("up")  # a clear error where the cloud is not installed
    from earmark import up

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
        exit_when_done=args.exit_when_done,
        demo=args.demo,
    )


def _module_of(name: str) -> ModuleType:
    """The command's module, imported now (a speaker's wheel has no cloud to import)."""
    try:
        return importlib.import_module(COMMANDS[name][1])
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] not in _CLOUD:
            raise
        raise ConfigError(
            f"earmark {name}: the cloud is not installed here (a speaker's wheel holds only the device);"
            " run it on the server, or install earmark with the cloud extra: pip install 'earmark[cloud]'"
        ) from None


def _main_of(name: str) -> Callable[..., int]:
    """The command's `main(argv, prog)`."""
    main: Callable[..., int] = _module_of(name).main
    return main


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
    if name == "up":
        return run_cli("earmark up", lambda: _up(args, root), verbose)
    flags = ["-v"] * verbose if name in VERBOSE_AWARE else []
    if name == "doctor":  # `earmark device doctor`: -v belongs to `device`, before `doctor`
        lead = [*flags, "doctor"]
    elif name == "models":
        lead = ["--dir", str(paths.models_dir(root))]
    elif name in ("pipeline", "review", "audit"):
        # The command's own top-level -v, before any of its subcommands.
        lead = ["--data-dir", str(paths.cloud_dir(root)), *flags, *(["audit"] if name == "audit" else [])]
    else:
        lead = flags
    prog = f"earmark {name}"
    return run_cli(prog, lambda: _main_of(name)([*lead, *args], prog=prog), verbose)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `earmark`."""
    return entry("earmark", _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
