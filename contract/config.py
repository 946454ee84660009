"""Settings loading shared by device and cloud: flags, then `EARMARK_*` environment, then TOML."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from contract.errors import EarmarkError


class ConfigError(EarmarkError):
    """Settings that are missing or invalid."""

    code = "config"


class LayeredSettings(BaseSettings):
    """Base for settings read from flags, environment and an optional TOML file."""

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


S = TypeVar("S", bound=LayeredSettings)


def _one_line(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in err.errors())


def load_settings(cls: type[S], config_file: Path | None = None, **overrides: Any) -> S:
    """Build settings from flags (`overrides`), environment and an optional TOML file."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"{config_file}: no such config file")
    target: type[S] = cls
    if config_file is not None:
        # pydantic-settings reads the TOML path from the class config, so a file chosen at
        # run time gets a subclass of its own.
        config = SettingsConfigDict(**{**cls.model_config, "toml_file": config_file})
        target = type(f"{cls.__name__}FromFile", (cls,), {"model_config": config})
    try:
        return target(**overrides)
    except ValidationError as err:
        raise ConfigError(f"invalid settings: {_one_line(err)}") from err
    except ValueError as err:  # a TOML syntax error
        raise ConfigError(f"{config_file}: {err}") from err
