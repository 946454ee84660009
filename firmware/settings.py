"""Device settings: built once in `main()` and passed down.

Sources, strongest first: command-line flags, `EARMARK_*` environment variables
(nested with `__`, e.g. `EARMARK_FRONTEND__SEGMENTER__SILENCE_SECONDS=0.9`), a TOML file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from firmware.errors import ConfigError
from firmware.frontend import FrontEndSettings
from firmware.wake import WakeSettings


class DeviceSettings(BaseSettings):
    """Everything the device needs to hear and cut out a request."""

    model_config = SettingsConfigDict(env_prefix="EARMARK_", env_nested_delimiter="__", extra="forbid", frozen=True)

    input: str = Field("mic", description="mic, sample, a WAV path, or - for raw PCM on stdin")
    device: str | None = Field(None, description="microphone index or name substring")
    save_dir: Path | None = Field(None, description="write each utterance here as WAV; off by default")
    wake: WakeSettings = WakeSettings()
    frontend: FrontEndSettings = FrontEndSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags, then environment, then the TOML file in `model_config["toml_file"]`."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def _one_line(err: ValidationError) -> str:
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "settings"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def load_settings(config_file: Path | None = None, **overrides: Any) -> DeviceSettings:
    """Build settings from flags (`overrides`), environment and an optional TOML file."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"{config_file}: no such config file")
    # pydantic-settings reads the TOML path from the class config, so a file chosen at
    # run time gets a subclass of its own.
    cls: type[DeviceSettings] = DeviceSettings
    if config_file is not None:
        config = SettingsConfigDict(**{**DeviceSettings.model_config, "toml_file": config_file})
        cls = type("DeviceSettingsFromFile", (DeviceSettings,), {"model_config": config})
    try:
        return cls(**overrides)
    except ValidationError as err:
        raise ConfigError(f"invalid settings: {_one_line(err)}") from err
    except ValueError as err:  # a TOML syntax error
        raise ConfigError(f"{config_file}: {err}") from err
