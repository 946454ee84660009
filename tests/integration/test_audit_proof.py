"""A household's audit proof (issue 28): signed heads, inclusion paths, offline verification, tampering."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from review_opt_out import audit, audit_proof
from review_opt_out.errors import ReviewError
from review_opt_out.registry import Channel, Registry
from review_opt_out.signing import create_key, public_key_path
from tests.conftest import REPO
from tests.review_helpers import open_both


def history(registry: Registry) -> None:
    """Two households, their entries interleaved in one log: 9 entries, h1's last (9) an opt-out."""
    registry.create_household("h1", "The Parks")
    registry.create_household("h2", "The Lees")
    for allowed in (True, False, True):
        registry.set_consent("h1", allowed, "ana", Channel.APP)
        registry.set_consent("h2", allowed, "li", Channel.APP)
    registry.set_consent("h1", False, "ana", Channel.VOICE)


def proof_of(registry: Registry, household_id: str, where: Path) -> Path:
    with registry.transaction() as db:
        made = audit_proof.household_proof(db, registry.signer, household_id)
    where.write_text(made.model_dump_json())
    return where


def verify(data: Path, *proofs: Path, key: Path | None = None) -> subprocess.CompletedProcess[str]:
    flags = [arg for proof in proofs for arg in ("--proof", str(proof))]
    return subprocess.run(
        [sys.executable, "-m", "earmark", "audit", "verify", *flags, "--public-key", str(key or public_key_path(data))],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "EARMARK_HOME": str(data.parent / "nowhere")},  # offline: no database at all
    )  # fmt: skip


def test_a_households_proof_verifies_offline_and_shows_no_one_else(tmp_path: Path, database: str | None) -> None:
    _, registry = open_both(tmp_path / "cloud", database)
    history(registry)
    proof = proof_of(registry, "h1", tmp_path / "proof.json")
    document = json.loads(proof.read_text())
    assert {entry["subject"] for entry in document["entries"]} == {"h1"}
    assert len(document["entries"]) == 5  # created, four consent changes: none of h2's
    # h2's member and name appear nowhere: not as a value (a bare "li" can occur by chance
    # inside the base64 signature or a hash), nor inside an entry's detail.
    assert '"li"' not in proof.read_text() and "The Lees" not in proof.read_text()
    for entry in document["entries"]:
        assert entry["actor"] != "li" and "li" not in json.loads(entry["detail"]).values()
    assert document["head"]["size"] == 9 and all(entry["path"] for entry in document["entries"])
    done = verify(tmp_path / "cloud", proof)
    assert done.returncode == 0, done.stderr
    assert "proof holds: 5 entries of household h1 are in the log of 9 entries" in done.stdout
    # The head is kept: the service cannot say later it never signed it.
    heads = registry.db.execute("SELECT size, root, signature FROM audit_heads").fetchall()
    assert [(size, root) for size, root, _ in heads] == [(9, document["head"]["root"])]


def test_an_edited_proof_or_another_key_fails(tmp_path: Path, database: str | None) -> None:
    _, registry = open_both(tmp_path / "cloud", database)
    history(registry)
    proof = proof_of(registry, "h1", tmp_path / "proof.json")
    document = json.loads(proof.read_text())
    edited = json.loads(proof.read_text())
    edited["entries"][-1]["detail"] = edited["entries"][-1]["detail"].replace("false", "true")  # "I never opted out"
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    done = verify(tmp_path / "cloud", tmp_path / "edited.json")
    assert done.returncode == 1 and f"entry {document['entries'][-1]['seq']} was altered" in done.stderr
    moved = json.loads(proof.read_text())
    moved["head"]["size"] += 1  # a longer log than was signed
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    done = verify(tmp_path / "cloud", tmp_path / "moved.json")
    assert done.returncode == 1 and "signature does not verify" in done.stderr
    create_key(tmp_path / "other")
    done = verify(tmp_path / "cloud", proof, key=public_key_path(tmp_path / "other"))
    assert done.returncode == 1 and "not by the key given" in done.stderr
    (tmp_path / "junk.json").write_text('{"kind": "something else"}')
    done = verify(tmp_path / "cloud", tmp_path / "junk.json")
    assert done.returncode == 2 and "not an Earmark audit proof" in done.stderr  # bad input, not a failed proof


def drop_guards(registry: Registry, database: str | None) -> None:
    """What someone with the database owner's rights can do: remove the append-only triggers."""
    triggers = (
        ["audit_log_no_update", "audit_log_no_delete"]
        if database is None
        else ["audit_log_no_change ON audit_log", "audit_log_no_truncate ON audit_log"]
    )
    with registry.transaction() as db:
        for trigger in triggers:
            db.execute(f"DROP TRIGGER {trigger}")


def test_a_tampered_audit_table_gets_no_proof(tmp_path: Path, database: str | None) -> None:
    _, registry = open_both(tmp_path / "cloud", database)
    history(registry)
    drop_guards(registry, database)
    with registry.transaction() as db:
        db.execute("UPDATE audit_log SET detail = replace(detail, 'false', 'true') WHERE seq = 9")
    with pytest.raises(ReviewError, match="broken at entry 9"), registry.transaction() as db:
        audit_proof.household_proof(db, registry.signer, "h1")


def test_a_rewritten_log_is_caught_by_an_earlier_proof(tmp_path: Path, database: str | None) -> None:
    # The operator removes the household's last opt-out and rebuilds every hash after it:
    # the new log is self-consistent and its new proof verifies alone, but the household's
    # earlier proof has an entry the new one no longer holds.
    _, registry = open_both(tmp_path / "cloud", database)
    history(registry)
    earlier = proof_of(registry, "h1", tmp_path / "earlier.json")
    registry.set_consent("h2", False, "li", Channel.APP)
    drop_guards(registry, database)
    with registry.transaction() as db:
        db.execute("DELETE FROM audit_log WHERE seq >= 9")
        audit.append(db, "li", "consent.set", "h2", review_allowed=False, version=5)
    assert audit.verify(registry.db).ok
    newer = proof_of(registry, "h1", tmp_path / "newer.json")
    assert verify(tmp_path / "cloud", newer).returncode == 0
    done = verify(tmp_path / "cloud", newer, earlier)
    assert done.returncode == 1 and "entry 9 of the earlier proof is missing in the newer one" in done.stderr
