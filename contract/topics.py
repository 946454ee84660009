"""The versioned MQTT topic tree.

    earmark/v1/devices/{device_id}/status                        retained online/offline (+ last will)
    earmark/v1/devices/{device_id}/utterances/{utterance_id}/start   JSON UtteranceStart (to any worker)
    earmark/v1/devices/{device_id}/utterances/{utterance_id}/audio/{worker_id}  binary AudioChunk
    earmark/v1/devices/{device_id}/utterances/{utterance_id}/end/{worker_id}    JSON UtteranceEnd
    earmark/v1/devices/{device_id}/results                       JSON cloud -> device: UtteranceClaimed,
                                                                 RecognitionResult, UtteranceStored,
                                                                 UtteranceCancelled, PrivacyReply
    earmark/v1/devices/{device_id}/privacy                       JSON PrivacyRequest (a voice command)
    earmark/v1/households/{household_id}/consent                 retained JSON SignedConsent (cloud -> devices)
    earmark/v1/pipelines/{worker_id}/status                      retained JSON PipelineStatus while a worker listens

A device writes only under its own `devices/{device_id}/` (except `results`) and reads
its own results and its household's consent; the broker ACL enforces that.

Several pipeline workers share one broker: a start goes to ONE of them through an MQTT 5
shared subscription (`$share/{group}/.../start`); the worker that takes it answers
`UtteranceClaimed`, and the device addresses the rest of that utterance to it alone
(the trailing `{worker_id}` level), so every utterance is handled whole by one worker.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Annotated, Final
from uuid import UUID

from pydantic import AfterValidator

from contract.errors import ContractError

ROOT: Final = "earmark/v1"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_id(kind: str, value: str) -> str:
    """An id that is safe in a topic level and a file name, or ContractError."""
    if not _ID.match(value):
        raise ContractError("bad_id", f"{kind} {value[:80]!r} is not 1-64 of [A-Za-z0-9_.-] starting alphanumeric")
    return value


def _valid_id(value: str) -> str:
    try:
        return check_id("id", value)
    except ContractError as err:
        raise ValueError(err.message) from None


# A device or household id in a pydantic model: the same rule as in a topic.
SafeId = Annotated[str, AfterValidator(_valid_id)]


class UtterancePart(enum.StrEnum):
    """The three message kinds of one utterance stream."""

    START = "start"
    AUDIO = "audio"
    END = "end"


def status(device_id: str) -> str:
    """Retained online/offline status of a device."""
    return f"{ROOT}/devices/{check_id('device id', device_id)}/status"


def utterance(device_id: str, utterance_id: UUID, part: UtterancePart, worker_id: str | None = None) -> str:
    """One part of one utterance stream: the start to any worker, audio and end to the one that claimed it."""
    base = f"{ROOT}/devices/{check_id('device id', device_id)}/utterances/{utterance_id}/{part}"
    if part is UtterancePart.START:
        return base
    if worker_id is None:
        raise ContractError("bad_topic", f"an utterance's {part} goes to the worker that claimed it")
    return f"{base}/{check_id('worker id', worker_id)}"


def utterance_start_filter() -> str:
    """Every device's utterance starts."""
    return f"{ROOT}/devices/+/utterances/+/{UtterancePart.START}"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription: the broker gives each message to one member of the group."""
    return f"$share/{check_id('worker group', group)}/{topic_filter}"


def worker_utterance_filter(worker_id: str) -> str:
    """The audio and ends devices address to one worker."""
    return f"{ROOT}/devices/+/utterances/+/+/{check_id('worker id', worker_id)}"


def utterance_filter(device_id: str = "+") -> str:
    """Every message of utterance streams (every device by default): for watching, not for serving."""
    return f"{ROOT}/devices/{device_id}/utterances/#"


def results(device_id: str) -> str:
    """Recognition results for a device."""
    return f"{ROOT}/devices/{check_id('device id', device_id)}/results"


def privacy(device_id: str) -> str:
    """A device's spoken privacy commands, for the consent service."""
    return f"{ROOT}/devices/{check_id('device id', device_id)}/privacy"


def privacy_filter() -> str:
    """Every device's privacy commands."""
    return f"{ROOT}/devices/+/privacy"


def device_of(topic: str) -> str:
    """The device id of a `earmark/v1/devices/{d}/...` topic, or ContractError."""
    levels = topic.split("/")
    if len(levels) < 5 or "/".join(levels[:3]) != f"{ROOT}/devices":
        raise ContractError("bad_topic", "not a device topic")
    return check_id("device id", levels[3])


def pipeline_status(worker_id: str) -> str:
    """Retained while a pipeline worker is subscribed; cleared (empty, also its last will) when it goes."""
    return f"{ROOT}/pipelines/{check_id('worker id', worker_id)}/status"


def pipeline_status_filter() -> str:
    """Every pipeline worker's presence."""
    return f"{ROOT}/pipelines/+/status"


def consent(household_id: str) -> str:
    """Retained consent state of a household."""
    return f"{ROOT}/households/{check_id('household id', household_id)}/consent"


@dataclass(frozen=True)
class UtteranceTopic:
    """A parsed utterance topic."""

    device_id: str
    utterance_id: UUID
    part: UtterancePart
    worker_id: str | None = None  # whom audio and ends are addressed to; None for a start


def parse_utterance_topic(topic: str) -> UtteranceTopic:
    """Parse `earmark/v1/devices/{d}/utterances/{u}/start` or `.../{audio|end}/{worker}`, or raise ContractError."""
    levels = topic.split("/")
    if len(levels) not in (7, 8) or "/".join(levels[:3]) != f"{ROOT}/devices" or levels[4] != "utterances":
        raise ContractError("bad_topic", "not an utterance topic")
    try:
        utterance_id = UUID(levels[5])
        part = UtterancePart(levels[6])
    except ValueError as err:
        raise ContractError("bad_topic", "bad utterance id or part in topic") from err
    if (len(levels) == 7) != (part is UtterancePart.START):
        raise ContractError("bad_topic", "a start goes to any worker, audio and ends to the claiming one")
    worker_id = check_id("worker id", levels[7]) if len(levels) == 8 else None
    return UtteranceTopic(check_id("device id", levels[3]), utterance_id, part, worker_id)
