"""`earmark`: the top-level command (`earmark up`, `earmark models ...`)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence

from contract.errors import EarmarkError, report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `earmark`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["models"]:
        # Model management is cloud code; run it as its own process rather than import it.
        return subprocess.run([sys.executable, "-m", "pipeline.models", *argv[1:]], check=False).returncode
    if argv[:1] == ["audit"]:
        rest = argv[1:]
        data_dir = rest[:2] if rest[:1] == ["--data-dir"] else []
        command = [sys.executable, "-m", "review_opt_out.cli", *data_dir, "audit", *rest[len(data_dir) :]]
        return subprocess.run(command, check=False).returncode
    from hardware import up

    parser = argparse.ArgumentParser(prog="earmark", description="Earmark, the privacy-first smart speaker")
    sub = parser.add_subparsers(dest="command", required=True)
    up.add_arguments(sub.add_parser("up", help="broker + pipeline + device on this machine"))
    sub.add_parser("models", help="list or fetch Vosk models (earmark models --help)")
    sub.add_parser("audit", help="earmark audit [--data-dir DIR] verify: recompute the audit hash chain")
    args = parser.parse_args(argv)
    try:
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
            args.data_dir,
            args.vosk_model,
            extra,
            with_app=args.app,
            grammar=grammar,
            app_port=args.app_port,
        )
    except EarmarkError as err:
        return report("earmark", err)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
