"""Verifying the consent service's signature on a household's consent state.

Only the consent service holds the private key (review_opt_out/signing.py); devices
get the public key when they are flashed. A consent message that is not signed by that
key, or names another household, is not consent: the device ignores it.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from contract.errors import ContractError
from contract.messages import ConsentState, SignedConsent, decode_json


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key (first 16 hex digits of its SHA-256)."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The consent service's public key from a PEM file, or ContractError."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as err:
        raise ContractError("consent_key", f"{path}: not a readable PEM public key ({err})") from err
    if not isinstance(key, Ed25519PublicKey):
        raise ContractError("consent_key", f"{path}: not an Ed25519 public key")
    return key


def b64(data: bytes) -> str:
    """base64url without padding (what the envelope carries)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verify_consent(payload: bytes, public_key: Ed25519PublicKey, household_id: str) -> ConsentState:
    """The ConsentState inside a signed envelope for this household, or ContractError.

    Codes: `unsigned` (not an envelope), `unknown_key`, `bad_signature`, `other_household`.
    """
    try:
        envelope = decode_json(SignedConsent, payload)
    except ContractError as err:
        raise ContractError("unsigned", f"consent message is not a signed envelope ({err.code})") from None
    if envelope.key_id != key_id(public_key):
        raise ContractError("unknown_key", "consent message signed by an unknown key")
    try:
        signature = base64.urlsafe_b64decode(envelope.signature + "=" * (-len(envelope.signature) % 4))
        public_key.verify(signature, envelope.state.encode())
    except (InvalidSignature, ValueError):
        raise ContractError("bad_signature", "consent message signature does not verify") from None
    state = decode_json(ConsentState, envelope.state.encode())
    if state.household_id != household_id:
        raise ContractError("other_household", "consent message is for another household")
    return state
