"""Signed audit heads, and the proof a household downloads of its own audit entries.

The service signs the head of the audit log's Merkle tree (`merkle`) with the consent key
at intervals, and whenever a household asks for its proof. A proof holds that signed head
and the household's own entries (their content, chain hashes and inclusion paths), and
nothing of any other household. `earmark audit verify --proof FILE` checks it offline with
the public key alone: the signature, every entry's hash from its content, and every
entry's path to the signed root at the place its number says.

What it guarantees: an entry in a proof was in the log, unaltered and at that place, when
the head was signed, and the service cannot later deny having signed it. A service that
rewrites the log must sign a new head; a household holding an earlier proof checks the
new one against it (`--proof NEW --proof OLD`): each of its earlier entries must still be
there, unchanged. What it cannot: prove an entry was never written, or show a household
what the service left out of the log to begin with.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract.consent_signature import key_id, load_public_key
from contract.errors import ContractError
from pipeline.database import Database
from review_opt_out import audit, merkle
from review_opt_out.errors import ReviewError
from review_opt_out.signing import ConsentSigner

PROOF_KIND: Final = "earmark-audit-proof/1"
# Signed bytes start with this line: a head's signature can never pass for a consent
# state's (those sign JSON, which starts with "{"), though the same key makes both.
_HEAD_DOMAIN: Final = b"earmark audit head v1\n"
_HEX64 = r"^[0-9a-f]{64}$"


class SignedHead(BaseModel):
    """The log's Merkle tree at one size, signed by the consent key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=1)
    root: str = Field(pattern=_HEX64)
    chain_hash: str = Field(pattern=_HEX64, description="the chain hash of entry `size`")
    signed_at: str
    key_id: str
    signature: str

    def message(self) -> bytes:
        """The bytes the signature covers."""
        fields = [self.size, self.root, self.chain_hash, self.signed_at, self.key_id]
        return _HEAD_DOMAIN + json.dumps(fields, separators=(",", ":")).encode()


class ProvenEntry(BaseModel):
    """One audit entry as stored, with its inclusion path (sibling hashes, hex, leaf upwards)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int = Field(ge=1)
    at: str
    actor: str
    action: str
    subject: str
    detail: str
    prev_hash: str = Field(pattern=_HEX64)
    hash: str = Field(pattern=_HEX64)
    path: list[str]


class HouseholdProof(BaseModel):
    """What a household downloads: its audit entries and the signed head they lead to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["earmark-audit-proof/1"] = PROOF_KIND
    household_id: str
    head: SignedHead
    entries: list[ProvenEntry]


def sign_head(db: Database, signer: ConsentSigner) -> SignedHead | None:
    """Sign the log's head now (inside the caller's write transaction) and keep it; None if empty.

    The whole chain is checked first: a broken chain is never signed.
    """
    signed = _signed(db, signer)
    return None if signed is None else signed[0]


def load_proof(path: Path) -> HouseholdProof:
    """A proof file, or ReviewError saying what is wrong with it."""
    try:
        return HouseholdProof.model_validate_json(path.read_bytes())
    except OSError as err:
        raise ReviewError(f"{path}: cannot read it ({err.strerror or err})") from err
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise ReviewError(f"{path}: not an Earmark audit proof ({where}: {first['msg']})") from err


def load_key(path: Path) -> VerifyKey:
    """The consent key's public half, or ReviewError naming the file."""
    try:
        return load_public_key(path)
    except ContractError as err:
        raise ReviewError(f"{err} (give the key with --public-key)") from err


def sign_head_if_grown(db: Database, signer: ConsentSigner) -> SignedHead | None:
    """Sign the head if the log grew since the last signed one (the service's interval job)."""
    (entries,) = db.execute("SELECT COUNT(*) FROM audit_log").fetchone()
    (signed,) = db.execute("SELECT COALESCE(MAX(size), 0) FROM audit_heads").fetchone()
    return sign_head(db, signer) if int(entries) > int(signed) else None


def household_proof(db: Database, signer: ConsentSigner, household_id: str) -> HouseholdProof:
    """A household's proof, under a head signed now (inside the caller's write transaction)."""
    signed = _signed(db, signer)
    if signed is None:
        raise ReviewError("the audit log is empty: there is nothing to prove yet")
    head, tree, rows = signed
    path = merkle.inclusion_path
    entries = [
        ProvenEntry(**dict(zip(audit.COLUMNS, row, strict=True)), path=[h.hex() for h in path(tree, row[0] - 1)])
        for row in rows
        if row[4] == household_id  # the subject
    ]
    return HouseholdProof(household_id=household_id, head=head, entries=entries)


def _signed(db: Database, signer: ConsentSigner) -> tuple[SignedHead, list[list[bytes]], list[Any]] | None:
    """The head signed now, its tree and the log's entries (read once); None if the log is empty."""
    rows = audit.entries(db)
    checked = audit.check(rows)
    if not checked.ok:
        raise ReviewError(f"the audit log is broken at entry {checked.first_bad_seq} ({checked.problem}): not signed")
    if not rows:
        return None
    hashes = [row[-1] for row in rows]
    tree = merkle.levels([merkle.leaf_hash(h) for h in hashes])
    unsigned = SignedHead(
        size=len(hashes), root=merkle.root(tree).hex(), chain_hash=hashes[-1],
        signed_at=datetime.now(UTC).isoformat(), key_id=signer.key_id, signature="",
    )  # fmt: skip
    head = unsigned.model_copy(update={"signature": base64.b64encode(signer.sign_bytes(unsigned.message())).decode()})
    db.execute(
        "INSERT INTO audit_heads (size, root, chain_hash, signed_at, key_id, signature) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (size) DO NOTHING",
        (head.size, head.root, head.chain_hash, head.signed_at, head.key_id, head.signature),
    )
    return head, tree, rows


def verify_proof(proof: HouseholdProof, public_key: VerifyKey, earlier: Sequence[HouseholdProof] = ()) -> list[str]:
    """Every reason the proof does not hold (empty: it holds), checked with the public key alone."""
    problems = []
    head = proof.head
    if head.key_id != key_id(public_key):
        return [f"the head is signed by key {head.key_id}, not by the key given ({key_id(public_key)})"]
    try:
        public_key.verify(head.message(), base64.b64decode(head.signature, validate=True))
    except (BadSignatureError, binascii.Error, ValueError):
        return ["the head's signature does not verify: it was not signed by this key, or was changed"]
    root = bytes.fromhex(head.root)
    last = 0
    for entry in proof.entries:
        name = f"entry {entry.seq}"
        if entry.seq <= last:
            problems.append(f"{name} is out of order")
        last = entry.seq
        if entry.subject != proof.household_id:
            problems.append(f"{name} is about {entry.subject!r}, not this household")
        if entry.seq > head.size:
            problems.append(f"{name} is past the signed head ({head.size} entries)")
            continue
        fields = (entry.prev_hash, entry.seq, entry.at, entry.actor, entry.action, entry.subject, entry.detail)
        if audit.entry_hash(*fields) != entry.hash:
            problems.append(f"{name} was altered: its content does not give its hash")
            continue
        try:
            path = [bytes.fromhex(h) for h in entry.path]
            reached = merkle.root_from_path(merkle.leaf_hash(entry.hash), entry.seq - 1, head.size, path)
        except ValueError as err:
            problems.append(f"{name}: {err}")
            continue
        if reached != root:
            problems.append(f"{name} is not in the signed log at its place")
    for older in earlier:
        problems += _still_there(proof, older)
    return problems


def _still_there(newer: HouseholdProof, older: HouseholdProof) -> list[str]:
    """An earlier proof's entries must all be in the newer one, unchanged."""
    if older.household_id != newer.household_id:
        return [f"the earlier proof is for household {older.household_id!r}, not {newer.household_id!r}"]
    if older.head.size > newer.head.size:
        return [f"the earlier proof's log ({older.head.size} entries) is longer than the newer one's"]
    kept = {entry.seq: entry.hash for entry in newer.entries}
    return [
        f"entry {entry.seq} of the earlier proof is {'changed' if entry.seq in kept else 'missing'} in the newer one"
        for entry in older.entries
        if kept.get(entry.seq) != entry.hash
    ]
