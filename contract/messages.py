"""Wire messages between device and cloud: JSON headers, raw PCM payloads.

Every model is frozen, strict and forbids extra fields: a device's values are claims, so
`"true"`, `1` or `1.0` is not a boolean and `"2"`, `2.0` or `true` is not an integer.
The consent tag on `UtteranceStart` has no default, so a stream without one cannot
even be built.
"""

from __future__ import annotations

import enum
import struct
from datetime import datetime
from typing import Annotated, Final, Literal, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from contract.audio import CHANNELS, SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES
from contract.errors import ContractError

MAX_JSON_BYTES: Final = 16 * 1024
# 100-200 ms of PCM per chunk; anything much larger is out of contract.
CHUNK_SECONDS: Final = 0.16
MAX_CHUNK_PCM_BYTES: Final = int(0.2 * SAMPLE_RATE_HZ) * SAMPLE_WIDTH_BYTES
# Wire-level ceilings; the cloud applies its own, tighter limits on top.
MAX_CONSENT_VERSION: Final = 2**31 - 1
MAX_CHUNK_COUNT: Final = 2**16


class EndReason(enum.StrEnum):
    """Why an utterance stream ended."""

    SILENCE = "silence"
    MAX_LENGTH = "max_length"
    NO_SPEECH = "no_speech"
    CANCELLED = "cancelled"
    MUTED = "muted"
    ABANDONED = "abandoned"  # the device could not deliver it (broker unreachable too long)
    # Decided by the cloud (its second wake check did not hear the word): only a counted
    # record is kept. A device claiming it only gives up its own request.
    WAKE_REJECTED = "wake_rejected"


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


M = TypeVar("M", bound=_Message)


class AudioFormat(_Message):
    """PCM layout of the chunks (only the house format is accepted for now)."""

    encoding: Literal["s16le"] = "s16le"
    sample_rate_hz: Literal[16000] = SAMPLE_RATE_HZ
    channels: Literal[1] = CHANNELS


class UtteranceStart(_Message):
    """Opens an utterance stream; carries the household's consent as the device knew it."""

    type: Literal["utterance_start"] = "utterance_start"
    device_id: str = Field(min_length=1, max_length=64)
    household_id: str = Field(min_length=1, max_length=64)
    utterance_id: UUID
    capture_started_at: AwareDatetime
    audio_format: AudioFormat
    wake_word: str = Field(min_length=1, max_length=64)
    wake_score: float = Field(ge=0.0, le=1.0)
    firmware_version: str = Field(min_length=1, max_length=32)
    review_allowed: bool  # no default: a clip without a tag cannot be built
    consent_version: int = Field(ge=0, le=MAX_CONSENT_VERSION)  # 0: the device never saw a consent message


class UtteranceEnd(_Message):
    """Closes an utterance stream."""

    type: Literal["utterance_end"] = "utterance_end"
    utterance_id: UUID
    reason: EndReason
    chunk_count: int = Field(ge=0, le=MAX_CHUNK_COUNT)


class Word(_Message):
    """One recognized word with its timing."""

    word: str
    start_seconds: float
    end_seconds: float
    confidence: float = Field(ge=0.0, le=1.0)


class RecognitionResult(_Message):
    """A partial (while the user speaks) or final transcript, sent back to the device."""

    type: Literal["recognition_result"] = "recognition_result"
    utterance_id: UUID
    final: bool
    text: str
    words: tuple[Word, ...] = ()
    # Set when the cloud did not try to recognize: an empty text then means "not
    # transcribed", never "heard nothing".
    not_recognized: Literal["no_recognizer", "muted", "wake_rejected"] | None = None


class UtteranceClaimed(_Message):
    """A worker took this utterance: send its audio and end to that worker (and only to it)."""

    type: Literal["utterance_claimed"] = "utterance_claimed"
    utterance_id: UUID
    worker_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class UtteranceStored(_Message):
    """The cloud holds this utterance for good (stored, or settled: a duplicate, deleted before it
    was stored): the device may forget it. Until then it can send the whole utterance again."""

    type: Literal["utterance_stored"] = "utterance_stored"
    utterance_id: UUID


class UtteranceCancelled(_Message):
    """The cloud will not serve this utterance: stop streaming it and play nothing. Another
    speaker of the household answers (`arbitration`), or the cloud's second wake check did
    not hear the wake word (`wake_rejected`: a false wake, of which nothing is kept)."""

    type: Literal["utterance_cancelled"] = "utterance_cancelled"
    utterance_id: UUID
    reason: Literal["arbitration", "wake_rejected"] = "arbitration"


class PrivacyAction(enum.StrEnum):
    """What a voice may ask of the consent service. There is deliberately no "allow
    review": a voice can only ever narrow review (anyone in the room can talk)."""

    DELETE_LAST = "delete_last"  # this device's last request, and the command itself
    DELETE_TODAY = "delete_today"  # the household's requests today, in its time zone
    STOP_REVIEW = "stop_review"  # consent off, channel `voice`
    REVIEW_STATUS = "review_status"  # say the current setting


class PrivacyRequest(_Message):
    """A spoken privacy command, sent by the device that heard it."""

    type: Literal["privacy_request"] = "privacy_request"
    request_id: UUID
    action: PrivacyAction
    utterance_id: UUID  # the command's own utterance (deleted with what it deletes)


class PrivacyReply(_Message):
    """The consent service's answer to a PrivacyRequest."""

    type: Literal["privacy_reply"] = "privacy_reply"
    request_id: UUID
    action: PrivacyAction
    ok: bool
    deleted: int = Field(0, ge=0)
    review_allowed: bool | None = None  # the household's setting after the command
    code: str | None = Field(None, max_length=64)  # why not, when not ok


# What the cloud sends on a device's results topic.
CloudMessage = RecognitionResult | UtteranceClaimed | UtteranceStored | UtteranceCancelled | PrivacyReply
CloudToDevice = Annotated[CloudMessage, Field(discriminator="type")]
_CLOUD_TO_DEVICE: TypeAdapter[CloudMessage] = TypeAdapter(CloudToDevice)


class ConsentState(_Message):
    """A household's review consent, as decided by the consent service."""

    type: Literal["consent_state"] = "consent_state"
    household_id: str = Field(min_length=1, max_length=64)
    review_allowed: bool
    consent_version: int = Field(ge=1, le=MAX_CONSENT_VERSION)
    changed_at: datetime


class SignedConsent(_Message):
    """What the consent topic carries (retained): a ConsentState and the service's Ed25519 signature.

    `state` holds the exact JSON bytes that were signed, so verification never depends
    on how a JSON library re-serializes a model.
    """

    type: Literal["signed_consent"] = "signed_consent"
    key_id: str = Field(min_length=1, max_length=64)
    state: str = Field(min_length=1, max_length=4096)
    signature: str = Field(min_length=1, max_length=128)  # base64url, no padding


class PipelineStatus(_Message):
    """A pipeline worker is subscribed to utterances: devices hold their outbox until one is.

    Published retained right after the worker's subscription; its last will (and a clean
    stop) clears it with an empty retained message. A broker that lost its subscriptions
    (restarted without persistence) drops what devices publish; this tells them when
    someone is listening again.
    """

    type: Literal["pipeline_status"] = "pipeline_status"
    worker_id: str = Field(min_length=1, max_length=64)
    online: bool


class DeviceStatus(_Message):
    """Retained device presence; the last will says offline."""

    type: Literal["device_status"] = "device_status"
    device_id: str
    online: bool
    firmware_version: str | None = None


def decode_json(model: type[M], payload: bytes) -> M:
    """Parse a JSON message or raise ContractError (never echoing the payload)."""
    if len(payload) > MAX_JSON_BYTES:
        raise ContractError("payload_too_large", f"{model.__name__}: {len(payload)} bytes > {MAX_JSON_BYTES}")
    try:
        return model.model_validate_json(payload)
    except ValidationError as err:
        kinds = sorted({str(e["type"]) for e in err.errors()})
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in err.errors()})
        code = "malformed_json" if "json_invalid" in kinds else "schema_violation"
        raise ContractError(code, f"{model.__name__}: {', '.join(kinds)} at {', '.join(fields) or '-'}") from None


def decode_cloud_message(payload: bytes) -> CloudMessage:
    """Parse what the cloud sent on a device's results topic, or raise ContractError."""
    if len(payload) > MAX_JSON_BYTES:
        raise ContractError("payload_too_large", f"cloud message: {len(payload)} bytes > {MAX_JSON_BYTES}")
    try:
        return _CLOUD_TO_DEVICE.validate_json(payload)
    except ValidationError as err:
        raise ContractError("schema_violation", f"cloud message: {err.error_count()} errors") from None


def encode_json(message: _Message) -> bytes:
    """Serialize a JSON message."""
    return message.model_dump_json().encode()


# Audio chunk: 8-byte big-endian header, then raw S16_LE PCM (never base64 in JSON).
#   version:u8  flags:u8  reserved:u16  sequence:u32
_CHUNK_HEADER = struct.Struct(">BBHI")
CHUNK_VERSION: Final = 1
FLAG_PREROLL: Final = 0x01  # audio from before the wake word fired


class AudioChunk(_Message):
    """A numbered slice of the utterance's PCM."""

    sequence: int = Field(ge=0, lt=2**32)
    flags: int = Field(0, ge=0, lt=256)
    pcm: bytes = Field(repr=False)

    def encode(self) -> bytes:
        """Header + PCM."""
        return _CHUNK_HEADER.pack(CHUNK_VERSION, self.flags, 0, self.sequence) + self.pcm

    @classmethod
    def decode(cls, payload: bytes) -> AudioChunk:
        """Parse header + PCM or raise ContractError."""
        if len(payload) < _CHUNK_HEADER.size:
            raise ContractError("bad_chunk", "audio chunk shorter than its header")
        version, flags, _reserved, sequence = _CHUNK_HEADER.unpack_from(payload)
        if version != CHUNK_VERSION:
            raise ContractError("bad_chunk", f"audio chunk version {version} is not {CHUNK_VERSION}")
        pcm = payload[_CHUNK_HEADER.size :]
        if len(pcm) > MAX_CHUNK_PCM_BYTES:
            raise ContractError("payload_too_large", f"audio chunk of {len(pcm)} PCM bytes > {MAX_CHUNK_PCM_BYTES}")
        if len(pcm) % SAMPLE_WIDTH_BYTES:
            raise ContractError("bad_chunk", "audio chunk holds a partial sample")
        return cls(sequence=sequence, flags=flags, pcm=pcm)
