"""Everything Earmark keeps about a household, as one zip it can take away (GDPR art. 15, 20).

The zip is written as it is sent, page by page: the app never holds more than one page
of recordings and one recording's audio, whatever the household's size. Each recording is
read when its turn comes, so one deleted meanwhile is not in the file (nothing deleted
ever is). What is in it is told in its README.txt (`README` below).

Starting an export is one transaction: the rate limit is decided from the audit log
(`EXPORTS_PER_HOUR` per household, whichever app process served the earlier ones) and the
audit entry that counts this one commits with the decision. Progress ("312 of 412
recordings") is kept in the serving process only: it is a view, not a guarantee.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pipeline import clip_queries
from pipeline.clip_queries import Selection
from review_opt_out import audit, audit_proof, members
from review_opt_out.errors import NotFound, ReviewError
from review_opt_out.registry import Registry

EXPORTS_PER_HOUR: Final = 3
LINK_SECONDS: Final = 600.0  # a started export must be downloaded within this
PAGE_RECORDINGS: Final = 200
_ACTION: Final = "data.export"

README: Final = """Your data from Earmark
======================

Everything Earmark keeps about your household on {date}, as you asked for it.

household.json      Your household: its name, its settings (review on or off, how long
                    recordings are kept), its members and open invitations, and every
                    change of the review setting: when, to what, by whom, and how.
recordings.jsonl    One line (JSON) per recording still kept: its id, the speaker, when
                    it was captured and how long it is, what Earmark heard (transcript),
                    its consent tag (whether review was allowed when it was captured),
                    whether it may be reviewed now, and whether a person heard it: when,
                    under which reviewer pseudonym (never a name), and whether they
                    corrected the transcript. "audio" names its file, or is null when
                    its audio is not kept. "end_reason" says how it ended; "wake_rejected"
                    means the speaker woke by mistake and nothing of it was kept.
recordings/         The audio of each recording, as WAV (16 kHz, 16-bit, mono).
audit-proof.json    Your household's entries in Earmark's audit log, with a head signed
                    by Earmark's key: check it with `earmark audit verify --proof
                    audit-proof.json --public-key KEY` (the key is in the app). It
                    says when recordings were deleted and by whom, never what they held.

Recordings you deleted are not here: deleted means gone, from this file too.
"""


class ExportRefused(ReviewError):
    """Too many exports in the last hour; `retry_at` says when the next may start."""

    def __init__(self, message: str, retry_at: datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at


@dataclass
class Export:
    """One household's export, from its start to the end of its download."""

    export_id: str
    household_id: str
    recordings: int
    started_at: float  # monotonic seconds
    written: int = 0
    taken: bool = False
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Exports:
    """The exports this app process started (progress and one-time links)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, Export] = {}

    def start(self, registry: Registry, household_id: str, actor: str, client: str) -> Export:
        """Decide, audit and register one export (ExportRefused past the limit)."""
        with registry.transaction() as db:
            now = db.now()
            earlier = [
                datetime.fromisoformat(row[0])
                for row in db.execute(
                    "SELECT at FROM audit_log WHERE action = ? AND subject = ? AND at >= ? ORDER BY at",
                    (_ACTION, household_id, (now - timedelta(hours=1)).isoformat()),
                )
            ]
            if len(earlier) >= EXPORTS_PER_HOUR:
                retry_at = earlier[-EXPORTS_PER_HOUR] + timedelta(hours=1)
                raise ExportRefused(
                    f"You downloaded your data {EXPORTS_PER_HOUR} times in the last hour; you can again after "
                    f"{retry_at:%H:%M} UTC.",
                    retry_at,
                )
            count = clip_queries.count(db, Selection(household_id))
            audit.append(db, actor, _ACTION, household_id, recordings=count, client=client)
        export = Export(secrets.token_urlsafe(16), household_id, count, self._clock())
        with self._lock:
            self._forget_old()
            self._by_id[export.export_id] = export
        return export

    def take(self, export_id: str, household_id: str) -> Export:
        """The export to download now, once (NotFound: unknown, another household's, used or expired)."""
        with self._lock:
            self._forget_old()
            export = self._by_id.get(export_id)
            expired = export is not None and self._clock() - export.started_at > LINK_SECONDS
            if export is None or export.household_id != household_id or export.taken or expired:
                raise NotFound("this download link was used or has expired: start the download again")
            export.taken = True
            return export

    def progress(self, export_id: str, household_id: str) -> dict[str, Any]:
        """How far an export's download is."""
        with self._lock:
            export = self._by_id.get(export_id)
        if export is None or export.household_id != household_id:
            raise NotFound("no such export")
        with export.lock:
            return {"recordings": export.recordings, "written": export.written, "done": export.done}

    def _forget_old(self) -> None:
        # Finished or never taken: kept a little past the link's life for the progress poll.
        cutoff = self._clock() - 2 * LINK_SECONDS
        for export_id in [k for k, e in self._by_id.items() if e.started_at < cutoff]:
            del self._by_id[export_id]


class _Sink:
    """Where the zip writes: bytes wait here until the response sends them. No `tell`, so
    zipfile writes a stream (sizes after each file), never seeking back."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered below this."""

    def close(self) -> None:
        """Nothing to close: the response sends what is taken."""

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def stream(registry: Registry, export: Export) -> Iterator[bytes]:
    """The export's zip, piece by piece, as it is written."""
    sink = _Sink()
    now = datetime.now(UTC)
    stamp = now.timetuple()[:6]

    def entry(name: str, compress: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=stamp)
        info.compress_type = compress
        info.external_attr = 0o600 << 16
        return info

    household_id = export.household_id
    with zipfile.ZipFile(sink, "w") as archive:
        archive.writestr(entry("README.txt"), README.format(date=f"{now:%Y-%m-%d %H:%M} UTC"))
        archive.writestr(entry("household.json"), json.dumps(_household(registry, household_id), indent=1))
        yield sink.take()
        with archive.open(entry("recordings.jsonl"), "w") as lines:
            for page in _pages(registry, household_id):
                for recording in page:
                    lines.write((json.dumps(_described(recording), ensure_ascii=False) + "\n").encode())
                yield sink.take()
        for page in _pages(registry, household_id):
            for recording in page:
                if recording["has_audio"]:
                    try:
                        wav = registry.recording_audio(household_id, recording["id"])
                    except NotFound:
                        continue  # deleted since its page was read: not in the file
                    archive.writestr(entry(_audio_name(recording), zipfile.ZIP_STORED), wav)
                    yield sink.take()
                with export.lock:
                    export.written += 1
        with registry.transaction() as db:
            proof = audit_proof.household_proof(db, registry.signer, household_id)
        archive.writestr(entry("audit-proof.json"), proof.model_dump_json(indent=1))
    with export.lock:
        export.done = True
    yield sink.take()


def _pages(registry: Registry, household_id: str) -> Iterator[list[dict[str, Any]]]:
    after: tuple[str, str] | None = None
    while True:
        page = registry.recordings(household_id, after=after, limit=PAGE_RECORDINGS)
        if not page:
            return
        yield page
        after = (page[-1]["captured_at"], page[-1]["id"])


def _audio_name(recording: dict[str, Any]) -> str:
    captured = str(recording["captured_at"])[:19].replace(":", "-")
    return f"recordings/{captured}_{recording['id']}.wav"


def _described(recording: dict[str, Any]) -> dict[str, Any]:
    described = {key: value for key, value in recording.items() if key != "has_audio"}
    described["audio"] = _audio_name(recording) if recording["has_audio"] else None
    return described


def _household(registry: Registry, household_id: str) -> dict[str, Any]:
    household = registry.household(household_id)
    return {
        "household": asdict(household),
        "members": members.listing(registry, household_id),
        "review_setting_changes": [asdict(change) for change in registry.history(household_id)],
        "heard_by_a_person": registry.heard_summary(household_id),
    }
