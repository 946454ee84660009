"""Verifying the consent service's signature on a household's consent state.

Only the consent service holds the private key (review_opt_out/signing.py); devices
get the public key when they are flashed. A consent message that is not signed by that
key, or names another household, is not consent: the device ignores it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from contract.errors import ContractError
from contract.messages import ConsentState, SignedConsent, decode_json

# Verification uses PyNaCl (libsodium), not `cryptography`: on a speaker the latter's
# bindings cost ~7.5 MiB of a 512 MB Pi Zero's memory for one signature check per
# consent change. An Ed25519 SubjectPublicKeyInfo (RFC 8410) is this fixed DER prefix
# and the 32-byte key, so PEM needs no ASN.1 library either.
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_PEM_HEADER, _PEM_FOOTER = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"


def key_id(public_key: VerifyKey) -> str:
    """A short, stable name for a public key (first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(bytes(public_key)).hexdigest()[:16]


def public_key_pem(raw: bytes) -> str:
    """The PEM (SubjectPublicKeyInfo) of a raw 32-byte Ed25519 public key."""
    body = base64.b64encode(_ED25519_SPKI_PREFIX + raw).decode()
    return f"{_PEM_HEADER}\n{body}\n{_PEM_FOOTER}\n"


def parse_public_key(pem: str, source: str) -> VerifyKey:
    """An Ed25519 public key from PEM text, or ContractError naming `source`."""
    text = pem.strip()
    if not (text.startswith(_PEM_HEADER) and text.endswith(_PEM_FOOTER)):
        raise ContractError("consent_key", f"{source}: not a PEM public key")
    try:
        der = base64.b64decode("".join(text[len(_PEM_HEADER) : -len(_PEM_FOOTER)].split()), validate=True)
    except binascii.Error as err:
        raise ContractError("consent_key", f"{source}: not a PEM public key ({err})") from err
    if len(der) != len(_ED25519_SPKI_PREFIX) + 32 or not der.startswith(_ED25519_SPKI_PREFIX):
        raise ContractError("consent_key", f"{source}: not an Ed25519 public key")
    return VerifyKey(der[len(_ED25519_SPKI_PREFIX) :])


def load_public_key(path: Path) -> VerifyKey:
    """The consent service's public key from a PEM file, or ContractError."""
    try:
        pem = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ContractError("consent_key", f"{path}: not a readable PEM public key ({err})") from err
    return parse_public_key(pem, str(path))


def b64(data: bytes) -> str:
    """base64url without padding (what the envelope carries)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verify_consent(payload: bytes, public_key: VerifyKey, household_id: str) -> ConsentState:
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
        public_key.verify(envelope.state.encode(), signature)
    except (BadSignatureError, ValueError):
        raise ContractError("bad_signature", "consent message signature does not verify") from None
    state = decode_json(ConsentState, envelope.state.encode())
    if state.household_id != household_id:
        raise ContractError("other_household", "consent message is for another household")
    return state
