"""The clip store's public face for the consent side: finding, reading and deleting clips.

`pipeline` owns the clip store's tables: `clips`, `clip_audio`, `devices`,
`storage_policy`, the tombstones (`forgotten`, `forgotten_before`) and the utterance
ledger. `review_opt_out` reads and changes them only through these functions, never by
SQL of its own. Each takes the caller's `Database`: inside the caller's transaction
when what it reads or deletes here must commit with the caller's own rows (a deletion
with its audit entry, a spoken command with its tombstone).

One join crosses the line on purpose. Whether a clip may be reviewed, and which clips
retention expires, is decided from a clip's tag and receipt time *together with* the
consent side's rows (households, consent_history). That must stay one statement: the
decision and the clip it is about are read at one moment, in the transaction that acts
on it, and by index over millions of clips rather than with a lookup per clip. So the
functions that decide per clip take a `Judgement`, the caller's joins onto `clips c` and
its SQL over both (`review_opt_out.eligibility` holds the rule). Such SQL names only the
clip's tag, receipt time and what was kept: `household_id`, `review_allowed`,
`consent_version`, `received_at`, `review_blocked`, `audio_bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pipeline.database import Database, placeholders, utc_text

_DELETE_BATCH = 500  # ids bound in one statement


@dataclass(frozen=True)
class Judgement:
    """SQL the caller computes per clip over `clips c` and its own tables, which `joins` adds."""

    joins: str
    sql: str
    params: tuple[Any, ...] = ()  # bound in `sql`; `joins` binds none


@dataclass(frozen=True)
class Selection:
    """Which of a household's clips: by speaker, by date, or one by id (all of them when only
    the household is given).

    A date range matches the device's capture time *or* the cloud's receipt time: a
    device's wrong clock never keeps a recording out of "delete today".
    """

    household_id: str
    device_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    clip_id: str | None = None
    # A condition of the caller's over `c.utterance_id` (e.g. "a person heard it", which the
    # consent side knows and the clip store does not), with its parameters.
    also: str | None = None
    also_params: tuple[Any, ...] = ()

    def where(self) -> tuple[str, list[Any]]:
        """This selection as SQL over `clips c`, and its parameters."""
        where, params = ["c.household_id = ?"], [self.household_id]
        if self.device_id is not None:
            where.append("c.device_id = ?")
            params.append(self.device_id)
        if self.since is not None or self.until is not None:
            ranges = []
            for column in ("c.capture_started_at", "c.received_at"):
                bounds = [f"{column} >= ?"] * (self.since is not None) + [f"{column} < ?"] * (self.until is not None)
                ranges.append("(" + " AND ".join(bounds) + ")")
                params += [utc_text(t) for t in (self.since, self.until) if t is not None]
            where.append("(" + " OR ".join(ranges) + ")")
        if self.clip_id is not None:
            where.append("c.utterance_id = ?")
            params.append(self.clip_id)
        if self.also is not None:
            where.append(f"({self.also})")
            params += list(self.also_params)
        return " AND ".join(where), params


@dataclass(frozen=True)
class ListedClip:
    """A clip as its household's list shows it, with the caller's judgement of it."""

    utterance_id: str
    device_id: str
    capture_started_at: str
    duration_seconds: float
    transcript: str
    review_allowed: bool
    has_audio: bool
    end_reason: str
    judged: Any


@dataclass(frozen=True)
class JudgedClip:
    """A clip by insertion order, with its household and the caller's judgement of it."""

    order: int
    utterance_id: str
    household_id: str
    judged: Any


@dataclass(frozen=True)
class LastRequest:
    """A device's last request: stored, or still on its way to whichever worker will store it."""

    utterance_id: str
    stored: bool


def count(db: Database, which: Selection) -> int:
    """How many clips `which` matches."""
    condition, params = which.where()
    return int(db.execute(f"SELECT count(*) FROM clips c WHERE {condition}", params).fetchone()[0])  # noqa: S608


def ids(db: Database, which: Selection) -> list[str]:
    """The ids of the clips `which` matches."""
    condition, params = which.where()
    return [str(row[0]) for row in db.execute(f"SELECT c.utterance_id FROM clips c WHERE {condition}", params)]  # noqa: S608


def listing(
    db: Database,
    which: Selection,
    judgement: Judgement,
    *,
    after: tuple[str, str] | None = None,
    limit: int | None = None,
) -> list[ListedClip]:
    """The clips `which` matches, newest capture first, `limit` of them after the
    (capture_started_at, id) cursor `after`, each with `judgement` of it."""
    condition, params = which.where()
    if after is not None:
        condition += " AND (c.capture_started_at, c.utterance_id) < (?, ?)"
        params += list(after)
    query = (
        "SELECT c.utterance_id, c.device_id, c.capture_started_at, c.duration_seconds, c.transcript, "  # noqa: S608
        f"c.review_allowed, c.audio_bytes IS NOT NULL, c.end_reason, {judgement.sql} FROM clips c {judgement.joins} "
        f"WHERE {condition} ORDER BY c.capture_started_at DESC, c.utterance_id DESC"
    )
    if limit is not None:  # neither engine takes one spelling of "no limit"
        query += " LIMIT ?"
        params.append(limit)
    rows = db.execute(query, [*judgement.params, *params]).fetchall()
    return [
        ListedClip(str(r[0]), str(r[1]), str(r[2]), r[3], r[4], bool(r[5]), bool(r[6]), str(r[7]), r[8]) for r in rows
    ]


def judge(db: Database, judgement: Judgement, clip_id: str) -> tuple[str, Any] | None:
    """(household, `judgement` of the clip) now, or None for no such clip."""
    row = db.execute(
        f"SELECT c.household_id, {judgement.sql} FROM clips c {judgement.joins} WHERE c.utterance_id = ?",  # noqa: S608
        (*judgement.params, clip_id),
    ).fetchone()
    return None if row is None else (str(row[0]), row[1])


def judge_after(db: Database, judgement: Judgement, after_order: int, limit: int) -> list[JudgedClip]:
    """Up to `limit` clips stored after insertion order `after_order`, oldest first, each judged."""
    order = db.clip_order
    rows = db.execute(
        f"SELECT c.{order}, c.utterance_id, c.household_id, {judgement.sql} FROM clips c {judgement.joins} "  # noqa: S608
        f"WHERE c.{order} > ? ORDER BY c.{order} LIMIT ?",
        (*judgement.params, after_order, limit),
    ).fetchall()
    return [JudgedClip(int(r[0]), str(r[1]), str(r[2]), r[3]) for r in rows]


def matching(
    db: Database, judgement: Judgement, *, received_from: str | None = None, received_before: str | None = None
) -> list[tuple[str, str]]:
    """(household, clip id) of every clip `judgement` holds for, received in [from, before) when given
    (UTC text as stored; by the receipt-time index)."""
    where: list[str] = []
    params: list[Any] = []
    for bound, value in (("c.received_at >= ?", received_from), ("c.received_at < ?", received_before)):
        if value is not None:
            where.append(bound)
            params.append(value)
    where.append(judgement.sql)
    params += judgement.params
    rows = db.execute(
        f"SELECT c.household_id, c.utterance_id FROM clips c {judgement.joins} WHERE {' AND '.join(where)}",  # noqa: S608
        params,
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def received_before(db: Database, household_id: str, cutoff: datetime) -> list[str]:
    """The household's clips the cloud received before `cutoff` (by the household + receipt-time index)."""
    rows = db.execute(
        "SELECT utterance_id FROM clips WHERE household_id = ? AND received_at < ?", (household_id, utc_text(cutoff))
    )
    return [str(row[0]) for row in rows]


def pcm(db: Database, clip_id: str, *, household_id: str | None = None) -> bytes | None:
    """A clip's kept audio (raw PCM; only if it is `household_id`'s, when given), or None."""
    if household_id is None:
        row = db.execute("SELECT pcm FROM clip_audio WHERE utterance_id = ?", (clip_id,)).fetchone()
    else:
        row = db.execute(
            "SELECT a.pcm FROM clips c JOIN clip_audio a ON a.utterance_id = c.utterance_id "
            "WHERE c.utterance_id = ? AND c.household_id = ?",
            (clip_id, household_id),
        ).fetchone()
    return None if row is None else bytes(row[0])


def transcript(db: Database, clip_id: str) -> str | None:
    """What the recognizer heard in a clip, or None for no such clip."""
    row = db.execute("SELECT transcript FROM clips WHERE utterance_id = ?", (clip_id,)).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def last_request(
    db: Database, device_id: str, household_id: str, command_id: str, *, now: datetime, window: timedelta
) -> LastRequest | None:
    """The device's last request before the command `command_id`: one with speech, received
    within `window` before `now`; None if there is none.

    Receipt times are the utterance ledger's, the first any worker recorded (a stored clip
    carries it too): a request sent again after the command is still one said before it.
    A request the ledger knows but no worker has stored yet is still on its way.
    """
    command = db.execute("SELECT received_at FROM utterances WHERE utterance_id = ?", (command_id,)).fetchone()
    if command is None:
        command = db.execute("SELECT received_at FROM clips WHERE utterance_id = ?", (command_id,)).fetchone()
    before = str(command[0]) if command is not None else utc_text(now)
    span = (device_id, household_id, command_id, before, utc_text(now - window))
    stored = db.execute(
        "SELECT utterance_id, received_at FROM clips WHERE device_id = ? AND household_id = ? "
        "AND utterance_id != ? AND received_at <= ? AND received_at >= ? "
        "AND end_reason NOT IN ('no_speech', 'muted') ORDER BY received_at DESC LIMIT 1",
        span,
    ).fetchone()
    pending = db.execute(
        "SELECT utterance_id, received_at FROM utterances WHERE device_id = ? AND household_id = ? "
        "AND utterance_id != ? AND received_at <= ? AND received_at >= ? AND settled = 0 "
        "ORDER BY received_at DESC LIMIT 1",
        span,
    ).fetchone()
    if pending is not None and (stored is None or str(pending[1]) > str(stored[1])):
        return LastRequest(str(pending[0]), stored=False)
    return None if stored is None else LastRequest(str(stored[0]), stored=True)


def delete(db: Database, clip_ids: list[str]) -> None:
    """Delete these clips and their audio, in the caller's transaction: row and audio go in one commit."""
    for start in range(0, len(clip_ids), _DELETE_BATCH):
        batch = clip_ids[start : start + _DELETE_BATCH]
        marks = placeholders(batch)
        db.execute(f"DELETE FROM clip_audio WHERE utterance_id IN ({marks})", batch)  # noqa: S608
        db.execute(f"DELETE FROM clips WHERE utterance_id IN ({marks})", batch)  # noqa: S608


def newest_order(db: Database) -> int:
    """The insertion order of the newest clip stored (0: none). SQLite gives the next one this
    plus one, so after the newest clips are deleted their orders are handed out again."""
    return int(db.execute(f"SELECT coalesce(max({db.clip_order}), 0) FROM clips").fetchone()[0])  # noqa: S608


def device_household(db: Database, device_id: str) -> str | None:
    """The household a device is enrolled in, or None."""
    row = db.execute("SELECT household_id FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    return None if row is None else str(row[0])


def household_devices(db: Database, household_id: str) -> list[str]:
    """The devices enrolled in a household, by id."""
    rows = db.execute("SELECT device_id FROM devices WHERE household_id = ? ORDER BY device_id", (household_id,))
    return [str(row[0]) for row in rows]


def set_keep_audio(db: Database, household_id: str, keep: bool) -> None:
    """Whether the clip store keeps a household's audio from its next request on."""
    db.execute(
        "INSERT INTO storage_policy VALUES (?, ?) ON CONFLICT (household_id) DO UPDATE SET "
        "keep_audio = excluded.keep_audio",
        (household_id, int(keep)),
    )


def keep_audio_unless_set(db: Database, choices: list[tuple[str, bool]]) -> None:
    """Record (household, keep) for each household the clip store has no choice of yet."""
    db.executemany(
        "INSERT INTO storage_policy VALUES (?, ?) ON CONFLICT (household_id) DO NOTHING",
        [(household_id, int(keep)) for household_id, keep in choices],
    )


def forget(db: Database, device_id: str, utterance_ids: list[str], at: datetime) -> int:
    """Tombstones: these utterances of the device are never stored, should they arrive; how many are new."""
    return sum(
        db.execute(
            "INSERT INTO forgotten VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (utterance_id, device_id, utc_text(at))
        ).rowcount
        for utterance_id in utterance_ids
    )


def drop_tombstones_before(db: Database, moment: datetime) -> None:
    """Forget the tombstones laid before `moment`."""
    db.execute("DELETE FROM forgotten WHERE forgotten_at < ?", (utc_text(moment),))


def forget_household_before(
    db: Database, household_id: str, received_before: datetime, captured_since: datetime
) -> None:
    """No request of the household received before `received_before` is stored any more, nor
    one captured since `captured_since` (its day, by the device's clock) still on its way."""
    db.execute(
        "INSERT INTO forgotten_before VALUES (?, ?, ?) ON CONFLICT (household_id) DO UPDATE SET "
        "received_before = excluded.received_before, captured_since = excluded.captured_since "
        "WHERE excluded.received_before > forgotten_before.received_before",
        (household_id, utc_text(received_before), utc_text(captured_since)),
    )
