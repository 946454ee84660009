"""Pipeline settings: built once in `main()` and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from contract.config import LayeredSettings
from contract.mqtt import MqttSettings


class IngestSettings(BaseModel):
    """Stream handling limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream_timeout_seconds: float = Field(10.0, gt=0, le=300, description="silence on a stream before it is closed")
    gap_wait_seconds: float = Field(1.0, ge=0, le=30, description="wait for a missing chunk after the end message")
    queue_messages: int = Field(20_000, ge=100, description="bounded hand-off from the MQTT thread (~50 min of audio)")
    max_streams: int = Field(256, ge=1, description="utterances in progress at once")
    max_payload_bytes: int = Field(64 * 1024, ge=1024, description="anything larger is rejected unread")


class PipelineSettings(LayeredSettings):
    """Everything the cloud pipeline needs."""

    model_config = SettingsConfigDict(
        env_prefix="EARMARK_PIPELINE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path = Path("earmark-data")
    vosk_model: Path | None = Field(None, description="a Vosk model directory; None switches recognition off")
    grammar: tuple[str, ...] = Field((), description="restrict recognition to these phrases (Vosk grammar mode)")
    client_id: str = "earmark-pipeline"
    mqtt: MqttSettings = MqttSettings()
    ingest: IngestSettings = IngestSettings()
    recognition_threads: int = Field(2, ge=1, le=64)
