"""The household's consent as this device last saw it, signed by the consent service."""

from __future__ import annotations

import collections
import logging
import threading
from pathlib import Path

from nacl.signing import VerifyKey

from contract.consent_signature import load_public_key, verify_consent
from contract.errors import ContractError
from contract.messages import ConsentState
from firmware.state_file import write_atomically

_LOGGER = logging.getLogger(__name__)


class ConsentCache:
    """The household's consent as last seen in a validly signed message, persisted across restarts.

    Anyone who can publish on the broker can send a consent message; only the consent
    service can sign one. Without the service's public key nothing is adopted (fail
    closed: no review). The signed envelope itself is what is persisted, and it is
    verified again when read back.
    """

    def __init__(self, path: Path, household_id: str, public_key: VerifyKey | None) -> None:
        self._path = path
        self._household_id = household_id
        self._public_key = public_key
        self._lock = threading.Lock()
        self._state: ConsentState | None = None
        self.ignored: collections.Counter[str] = collections.Counter()  # by reason, for doctor and tests
        if public_key is None:
            _LOGGER.warning("no consent public key: consent messages are ignored and every clip says 'no review'")
            return
        try:
            self._state = verify_consent(path.read_bytes(), public_key, household_id)
        except FileNotFoundError:
            pass
        except ContractError as err:
            # A damaged or forged cache is unknown consent, which means no review.
            _LOGGER.warning("ignoring consent cache %s (%s)", path, err.code)

    @classmethod
    def open(cls, state_dir: Path, household_id: str, public_key_path: Path | None) -> ConsentCache:
        """The cache in a state directory, verifying with the key at `public_key_path` (ContractError if unreadable)."""
        public_key = load_public_key(public_key_path.expanduser()) if public_key_path is not None else None
        return cls(state_dir.expanduser() / "consent.json", household_id, public_key)

    def current(self) -> tuple[bool, int]:
        """(review_allowed, consent_version); unknown is (False, 0)."""
        with self._lock:
            if self._state is None:
                return False, 0
            return self._state.review_allowed, self._state.consent_version

    def update(self, payload: bytes) -> bool:
        """Adopt a newer, validly signed consent state for this household and persist it; False if ignored."""
        if self._public_key is None:
            self.ignored["no_public_key"] += 1
            return False
        try:
            state = verify_consent(payload, self._public_key, self._household_id)
        except ContractError as err:
            self.ignored[err.code] += 1
            _LOGGER.warning("ignored a consent message: %s", err.code)
            return False
        with self._lock:
            if self._state is not None and state.consent_version <= self._state.consent_version:
                if state.consent_version < self._state.consent_version:
                    self.ignored["replayed_older"] += 1  # a stale or replayed message never rolls consent back
                return False
            self._state = state
            write_atomically(self._path, payload.decode())
        _LOGGER.info(
            "consent for household is now review_allowed=%s (v%d)", state.review_allowed, state.consent_version
        )
        return True
