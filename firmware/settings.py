"""Device settings: built once in `main()` and passed down.

Sources, strongest first: command-line flags, `EARMARK_*` environment variables
(nested with `__`, e.g. `EARMARK_FRONTEND__SEGMENTER__SILENCE_SECONDS=0.9`), a TOML file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, model_validator

from contract import config
from contract.mqtt import MqttSettings
from firmware.assistant.settings import AssistantSettings
from firmware.audio.noise import MicrophoneSettings
from firmware.audio.output_settings import OutputSettings, moved_to_output
from firmware.frontend import FrontEndSettings
from firmware.outbox import UplinkSettings
from firmware.satellite.settings import DeviceMode, SatelliteSettings
from firmware.uplink import DeviceIdentity
from firmware.wake import WakeSettings


class DeviceSettings(config.LayeredSettings):
    """Everything the device needs to hear and cut out a request."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    env_prefix: ClassVar[str] = "EARMARK_"

    mode: DeviceMode = Field(
        DeviceMode.CLOUD, description="cloud: the Earmark cloud; home_assistant: a Wyoming satellite of Home Assistant"
    )
    input: str = Field("mic", description="mic, sample, a WAV path, or - for raw PCM on stdin")
    device: str | None = Field(None, description="microphone index or name substring")
    save_dir: Path | None = Field(None, description="write each utterance here as WAV; off by default")
    microphone: MicrophoneSettings = Field(
        default_factory=MicrophoneSettings, description="noise suppression and gain before the wake word"
    )
    wake: WakeSettings = WakeSettings()
    frontend: FrontEndSettings = FrontEndSettings()
    satellite: SatelliteSettings = SatelliteSettings()
    identity: DeviceIdentity | None = Field(None, description="needed to stream to the cloud")
    mqtt: MqttSettings = MqttSettings()
    uplink: UplinkSettings = UplinkSettings()
    assistant: AssistantSettings = Field(
        default_factory=AssistantSettings, description="cloud mode: intents, timers and replies on the device"
    )
    output: OutputSettings = Field(
        default_factory=OutputSettings, description="both modes: the loudspeaker, its sounds and volume"
    )
    state_dir: Path = Field(Path("~/.local/state/earmark"), description="persisted device state (last consent seen)")
    consent_public_key: Path | None = Field(
        None, description="the consent service's public key (PEM); without it every clip is sent as 'no review'"
    )

    # `[assistant]` and `[satellite]` held the output keys until `[output]`: read for one release.
    @classmethod
    def upgraded(cls, source: dict[str, Any], merged: Mapping[str, Any]) -> dict[str, Any]:
        """One source with old output keys moved to `[output]`, for the mode all sources choose."""
        moved: dict[str, Any] = moved_to_output(source, merged.get("mode", DeviceMode.CLOUD))
        return moved

    @model_validator(mode="before")
    @classmethod
    def _output_keys_moved(cls, data: Any) -> Any:
        """Settings built directly (not by `load_settings`) with old output keys: moved too."""
        return moved_to_output(data)


class SpeakerFileSettings(DeviceSettings):
    """Device settings read leniently from the speaker's own file, which also holds tables
    (`[gpio]`) that only the service knows; the doctor and the CLI ignore them."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    env_prefix: ClassVar[str] = "EARMARK_"


def load_settings(config_file: Path | None = None, **overrides: Any) -> DeviceSettings:
    """Build device settings from flags (`overrides`), environment and an optional TOML file."""
    return config.load_settings(DeviceSettings, config_file, **overrides)
