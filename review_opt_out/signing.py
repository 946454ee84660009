"""The consent service's Ed25519 key: it signs every ConsentState it publishes.

The key is made once by `earmark review setup` (the command that sets the cloud up)
and stored 0600; its public half goes onto every device at flash time. Devices accept
only consent states signed by it, so nobody else who can publish on the broker can
flip or pin a household's consent.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from nacl.signing import VerifyKey

from contract.consent_signature import b64, key_id
from contract.messages import ConsentState, SignedConsent, encode_json
from review_opt_out.errors import ReviewError

PRIVATE_KEY_NAME = "consent-signing.key"
PUBLIC_KEY_NAME = "consent-signing.pub"


def key_dir(data_dir: Path) -> Path:
    """Where the cloud keeps its consent signing key."""
    return data_dir / "keys"


def public_key_path(data_dir: Path) -> Path:
    """The PEM public key devices are given."""
    return key_dir(data_dir) / PUBLIC_KEY_NAME


def create_key(data_dir: Path) -> tuple[Path, bool]:
    """Make the signing key if there is none; return (public key path, whether it was created)."""
    directory = key_dir(data_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_path = directory / PRIVATE_KEY_NAME
    if private_path.exists():
        return public_key_path(data_dir), False
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    # Created 0600 from the first byte (O_EXCL: two setups never overwrite each other).
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    public_key_path(data_dir).write_bytes(
        key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return public_key_path(data_dir), True


class ConsentSigner:
    """Signs consent states with the service's private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = key_id(VerifyKey(private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)))

    @classmethod
    def load(cls, data_dir: Path) -> ConsentSigner:
        """The signer for a data directory, or ReviewError saying how to make the key."""
        path = key_dir(data_dir) / PRIVATE_KEY_NAME
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise ReviewError(f"no consent signing key in {path.parent}: run `earmark review setup` first") from None
        except ValueError as err:
            raise ReviewError(f"{path}: not a readable private key ({err})") from err
        if not isinstance(key, Ed25519PrivateKey):
            raise ReviewError(f"{path}: not an Ed25519 key")
        return cls(key)

    def public_pem(self) -> bytes:
        """The public half, as devices and households are given it (PEM)."""
        return self._key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    def sign_bytes(self, message: bytes) -> bytes:
        """The raw signature of `message` (callers put a domain line first: see audit_proof)."""
        return self._key.sign(message)

    def sign(self, state: ConsentState) -> bytes:
        """The signed envelope (JSON bytes) for a consent state."""
        state_json = encode_json(state)
        envelope = SignedConsent(
            key_id=self.key_id, state=state_json.decode(), signature=b64(self._key.sign(state_json))
        )
        return encode_json(envelope)
