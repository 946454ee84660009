"""`earmark pipeline doctor`: check what a pipeline worker needs, and say how to fix what is wrong.

A worker starts with less than this (no Vosk model: it stores without recognizing; a
broken wake-check model: its word's requests are kept from review), so an operator can
miss it in the log. The doctor says each one plainly and exits 1 when any fails.
"""

from __future__ import annotations

from contract.cli import Check
from contract.errors import EarmarkError
from pipeline.settings import PipelineSettings
from pipeline.wake_check import WakeCheckUnavailable, WakeVerifier


def _database(settings: PipelineSettings) -> Check:
    """Reachable, and at which schema version, read only: opening it as `run` does would
    migrate it and mark the data directory."""
    import sqlite3

    from pipeline.clip_schema import COMPONENT, database_path
    from pipeline.database import Database, connect_postgresql
    from pipeline.schema_versions import recorded_versions, versions

    where = "PostgreSQL" if settings.database else f"SQLite in {settings.data_dir}"
    path = database_path(settings.data_dir)
    if not settings.database and not path.exists():
        return Check("database", True, f"none yet in {settings.data_dir}: `earmark pipeline run` creates it")
    try:
        if settings.database:
            db = connect_postgresql(settings.database)
        else:
            db = Database("sqlite", sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False))
    except (EarmarkError, sqlite3.Error) as err:
        return Check("database", False, str(err), "start the database, or check --database / data_dir")
    try:
        recorded = recorded_versions(db).get(COMPONENT, 0)
    except db.errors:
        recorded = 0
    finally:
        db.close()
    newest = len(versions("pipeline", db.dialect))
    if recorded > newest:
        return Check("database", False, f"{where}: schema {recorded}, newer than this release's {newest}",
                       "upgrade Earmark on this machine")  # fmt: skip
    state = "current" if recorded == newest else f"at {recorded} of {newest}: `earmark pipeline run` upgrades it"
    return Check("database", True, f"{where}, schema {state}")


def _recognition(settings: PipelineSettings) -> Check:
    model = settings.vosk_model
    if model is None:
        return Check("recognition", True, "off: requests are stored without a transcript (no vosk_model)")
    if not (model / "am").is_dir() and not (model / "final.mdl").is_file():
        return Check(
            "recognition", False, f"{model}: not a Vosk model directory", "`earmark models list`, then set vosk_model"
        )
    return Check("recognition", True, f"Vosk model {model}")


def _wake_check(settings: PipelineSettings) -> Check:
    try:
        verifier = WakeVerifier.from_settings(settings.wake_check)
    except WakeCheckUnavailable as err:
        return Check("wake check", False, str(err), "pip install 'earmark[cloud]', or set wake_check.models_dir")
    if verifier is None:
        return Check("wake check", True, "off (wake_check.enabled = false): every wake is believed")
    if verifier.broken:
        return Check(
            "wake check",
            False,
            "; ".join(f"{word}: {reason}" for word, reason in sorted(verifier.broken.items()))
            + " (until fixed, these words' requests are answered but never reviewed)",
            "reinstall pymicro-wakeword, or point wake_check.models_dir at a folder of good models",
        )
    return Check("wake check", True, f"microWakeWord re-checks {', '.join(verifier.words)}")


def run_checks(settings: PipelineSettings) -> list[Check]:
    """Every check, in the order a person would fix them."""
    return [_database(settings), _recognition(settings), _wake_check(settings)]
