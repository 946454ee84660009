"""`earmark pipeline`: run the cloud ingest, enroll devices, manage models."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contract.cli import OneLineParser, add_database_arguments, database_url, entry, print_checks
from contract.config import ConfigError, load_settings
from contract.errors import EarmarkError, report
from pipeline.settings import PipelineSettings

_LOGGER = logging.getLogger(__name__)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog, description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("--data-dir", type=Path, help="the cloud's data directory (default: DATA/cloud)")
    add_database_arguments(parser, "postgresql://…")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve every device's utterance streams")
    run.add_argument("--broker", help="HOST:PORT")
    run.add_argument("--vosk-model", type=Path, help="Vosk model directory (omit to store without recognition)")
    run.add_argument("--grammar", action="append", help="restrict recognition to this phrase (repeatable)")
    enroll = sub.add_parser("enroll", help="register a device as belonging to a household")
    enroll.add_argument("device_id")
    enroll.add_argument("household_id")
    enroll.add_argument("--move", action="store_true", help="move a device enrolled in another household")
    sub.add_parser("models", help="list or fetch Vosk models", add_help=False)
    doctor = sub.add_parser("doctor", help="check the database, the Vosk model and the wake check")
    doctor.add_argument("--vosk-model", type=Path, help="the Vosk model directory `run` will be given")
    return parser


async def _serve(settings: PipelineSettings) -> None:
    from pipeline.clip_schema import Checkpointer
    from pipeline.ingest import IngestService
    from pipeline.recognizer import load_model
    from pipeline.store import SqlClipStore

    model = load_model(settings.vosk_model) if settings.vosk_model is not None else None
    store = SqlClipStore(settings.data_dir, database=settings.database)
    # PostgreSQL checkpoints by itself; SQLite's WAL is moved off the request path here.
    checkpointer = Checkpointer(settings.data_dir).start() if settings.database is None else None
    # A second connection for contest decisions (see IngestService).
    contests = SqlClipStore(settings.data_dir, database=settings.database)
    service = IngestService(settings, store, model, contest_store=contests)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)
    ready = asyncio.Event()
    runner = asyncio.create_task(service.run(ready), name="ingest")
    waiter = asyncio.create_task(ready.wait(), name="ready")
    # SIGTERM must stop it even while the broker is unreachable: wait for either.
    await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if ready.is_set():
        line = {"type": "pipeline_ready", "broker": settings.mqtt.address, "data_dir": str(settings.data_dir)}
        print(json.dumps(line), flush=True)  # noqa: T201 - a readiness line for supervisors and tests
    waiter.cancel()
    try:
        await runner
    finally:
        if checkpointer is not None:
            checkpointer.stop()
        contests.close()
        store.close()


def main(argv: Sequence[str] | None = None, prog: str = "earmark pipeline") -> int:
    """Entry point of `earmark pipeline` (`prog`: the name it reports under)."""
    return entry(prog, lambda args: _main(args, prog), argv)


def _main(argv: list[str], prog: str) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "models" in argv[:3]:
        from pipeline.models import main as models_main

        return models_main(argv[argv.index("models") + 1 :])
    args = _parser(prog).parse_args(argv)
    os.umask(0o077)  # clips, transcripts and the database are private from the first byte
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    try:
        database = database_url(args, prog)
        if database is not None:
            overrides["database"] = database
        if args.command == "enroll":
            from pipeline.store import SqlClipStore

            settings = load_settings(PipelineSettings, args.config, **overrides)
            store = SqlClipStore(settings.data_dir, database=settings.database)
            try:
                current = store.device_household(args.device_id)
                if current not in (None, args.household_id) and not args.move:
                    # Its next recordings would land in another household's list: only on purpose.
                    raise ConfigError(
                        f"{args.device_id} belongs to household {current}; add --move to move it to {args.household_id}"
                    )
                previous = store.enroll(args.device_id, args.household_id)
            finally:
                store.close()
            moved = (
                f" (moved from {previous}; takes effect at its next request)"
                if previous not in (None, args.household_id)
                else ""
            )
            print(f"enrolled {args.device_id} in {args.household_id}{moved}")  # noqa: T201
            return 0
        if args.command == "doctor":
            return _doctor(load_settings(PipelineSettings, args.config, **overrides), args.vosk_model)
        if args.broker:
            host, _, port = args.broker.rpartition(":")
            overrides["mqtt"] = {"host": host or "127.0.0.1", "port": port}
        if args.vosk_model is not None:
            overrides["vosk_model"] = args.vosk_model
        if args.grammar:
            overrides["grammar"] = args.grammar
        settings = load_settings(PipelineSettings, args.config, **overrides)
        asyncio.run(_serve(settings))
        return 0
    except EarmarkError as err:
        return report(prog, err)


def _doctor(settings: PipelineSettings, vosk_model: Path | None) -> int:
    from pipeline.doctor import run_checks

    if vosk_model is not None:
        settings = settings.model_copy(update={"vosk_model": vosk_model})
    return print_checks(run_checks(settings))


if __name__ == "__main__":
    raise SystemExit(main())
