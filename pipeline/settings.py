"""Pipeline settings: built once in `main()` and passed down."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contract import paths
from contract.config import LayeredSettings
from contract.mqtt import MqttSettings
from contract.topics import SafeId
from pipeline.arbitration import ContestRules
from pipeline.database import check_url
from pipeline.errors import DatabaseUnavailable
from pipeline.wake_check import WakeCheckSettings


class IngestSettings(BaseModel):
    """The cloud's own limits on what a device may make it hold: every device number is checked against these."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="no message from a connected device for this long closes its stream"
    )
    gap_wait_seconds: float = Field(1.0, ge=0, le=30, description="wait for a missing chunk after the end message")
    max_utterance_seconds: float = Field(
        20.0, gt=0, le=120, description="audio kept per utterance; the stream ends there as max_length"
    )
    end_grace_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="beyond max_utterance_seconds of connected time a stream is closed whatever it sends",
    )
    sequence_window_chunks: int = Field(64, ge=1, le=4096, description="chunks accepted ahead of the next missing one")
    queue_messages: int = Field(20_000, ge=100, description="bounded hand-off from the MQTT thread (~50 min of audio)")
    max_streams: int = Field(256, ge=1, description="utterances in progress at once, all devices")
    max_streams_per_household: int = Field(16, ge=1, description="utterances in progress at once, one household")
    max_streams_per_device: int = Field(2, ge=1, description="utterances in progress at once, one device")
    max_orphan_chunks: int = Field(2_000, ge=0, description="chunks held, all devices, while their start is missing")
    max_device_messages_per_second: float = Field(
        100.0, gt=0, description="sustained messages one device may send (a speaker sends ~7)"
    )
    device_message_burst: int = Field(
        2_000, ge=100, description="messages one device may send at once (an outbox resent after a reconnect)"
    )
    max_payload_bytes: int = Field(64 * 1024, ge=1024, description="anything larger is rejected unread")
    reconcile_interval_seconds: float = Field(60.0, gt=0, description="how often old ledger entries go")
    recognized_preroll_seconds: float = Field(
        0.3,
        ge=0,
        le=10,
        description="of the pre-roll (audio from before the wake word fired), only this much is recognized:"
        " the wake word lies before it",
    )
    arbitration_window_seconds: float = Field(
        1.0, ge=0, le=10, description="requests of one household starting this close are one request: one answers"
    )
    arbitration_settle_seconds: float = Field(
        0.5, ge=0, le=5, description="how long after the first speaker that spoke ends the others may still end"
    )
    arbitration_contests_per_minute: int = Field(
        12, ge=1, le=600, description="a device entering more contests than this answers alone, cancelling no one"
    )

    def contest_rules(self) -> ContestRules:
        """Arbitration's numbers (a worker that died never reports: its entrants are given up
        on after the longest request it could have been streaming)."""
        return ContestRules(
            window_seconds=self.arbitration_window_seconds,
            settle_seconds=self.arbitration_settle_seconds,
            give_up_seconds=self.max_utterance_seconds + self.end_grace_seconds,
            contests_per_minute=self.arbitration_contests_per_minute,
        )

    @model_validator(mode="after")
    def _quotas_nest(self) -> IngestSettings:
        if not self.max_streams_per_device <= self.max_streams_per_household <= self.max_streams:
            raise ValueError("stream quotas must nest: per device <= per household <= max_streams")
        return self


def default_client_id() -> str:
    """A client id of this worker's own: two workers with one id would keep disconnecting each other."""
    return f"earmark-pipeline-{socket.gethostname()[:24]}-{os.getpid()}-{secrets.token_hex(3)}"


class PipelineSettings(LayeredSettings):
    """Everything the cloud pipeline needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    env_prefix: ClassVar[str] = "EARMARK_PIPELINE_"

    data_dir: Path = Field(default_factory=paths.cloud_dir, description="clips and the database (DATA/cloud)")
    database: str | None = Field(
        None, description="postgresql://… for PostgreSQL; None (or 'sqlite') for SQLite in data_dir"
    )
    vosk_model: Path | None = Field(None, description="a Vosk model directory; None switches recognition off")
    grammar: tuple[str, ...] = Field((), description="restrict recognition to these phrases (Vosk grammar mode)")
    client_id: SafeId = Field(default_factory=default_client_id)  # also names its presence topic
    worker_group: SafeId = Field(
        "earmark-pipeline", description="workers in one group share the starts (MQTT 5 shared subscription)"
    )
    mqtt: MqttSettings = MqttSettings()
    ingest: IngestSettings = IngestSettings()
    wake_check: WakeCheckSettings = WakeCheckSettings()
    recognition_threads: int = Field(2, ge=1, le=64)

    @field_validator("database")
    @classmethod
    def _database_url(cls, url: str | None) -> str | None:
        try:
            return check_url(url)
        except DatabaseUnavailable as err:
            raise ValueError(err.message) from err
