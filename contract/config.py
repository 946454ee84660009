"""Settings loading shared by device and cloud: flags, then `EARMARK_*` environment, then TOML.

Not pydantic-settings: importing it costs a speaker ~5.5 MiB and ~0.1 s (asyncio,
dotenv, email, importlib.metadata) for three sources merged in a few lines here. The
rules are the ones it had: names are case-insensitive, `__` nests
(`EARMARK_FRONTEND__SEGMENTER__SILENCE_SECONDS=0.9`), a value for a field that holds a
model, list, tuple or dict is JSON, and an environment variable that names no field is
ignored (the device and the cloud share one environment on `earmark up`), unless a model
lists the name in `moved_fields`: a setting that moved elsewhere, which the model's parent
moves (so an old variable keeps working for the release that warns about it).
"""

from __future__ import annotations

import json
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from contract.errors import EarmarkError

ENV_NESTED_DELIMITER = "__"


class ConfigError(EarmarkError):
    """Settings that are missing or invalid."""

    code = "config"


class LayeredSettings(BaseModel):
    """Base for settings read from flags, environment and an optional TOML file."""

    env_prefix: ClassVar[str] = "EARMARK_"

    @classmethod
    def upgraded(cls, source: dict[str, Any], merged: Mapping[str, Any]) -> dict[str, Any]:
        """One source (the file, the environment or the flags) with settings that moved put
        where they are now, before the sources are layered, so a flag still beats a file
        that uses an old name; `merged` is every source layered as given."""
        return source


S = TypeVar("S", bound=LayeredSettings)


def one_line(err: ValidationError) -> str:
    """Every field error, named by its path, on one line (values left out: they may be secrets)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in err.errors())


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class a field holds (`MqttSettings`, `DeviceIdentity | None`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, UnionType):
        models = [_model_of(arg) for arg in typing.get_args(annotation) if arg is not NoneType]
        return models[0] if len(models) == 1 else None
    return None


def _is_structured(annotation: Any) -> bool:
    """Whether an environment value for this field is JSON (a model, list, tuple, dict)."""
    if _model_of(annotation) is not None:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, UnionType):
        return any(_is_structured(arg) for arg in typing.get_args(annotation) if arg is not NoneType)
    return origin in (list, tuple, dict, set, frozenset) or annotation in (list, tuple, dict, set, frozenset)


def _from_environment(cls: type[BaseModel], prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """The fields of `cls` that `environ` sets, nested as the model nests them."""
    found: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.upper().startswith(prefix.upper()):
            continue
        path = name[len(prefix) :].lower().split(ENV_NESTED_DELIMITER)
        model: type[BaseModel] | None = cls
        target = found
        for depth, key in enumerate(path):
            field = model.model_fields.get(key) if model is not None else None
            if field is None:
                if depth == len(path) - 1 and key in getattr(model, "moved_fields", ()):
                    target[key] = value  # a moved setting: its parent moves it
                break  # names no field: another program's variable
            if depth == len(path) - 1:
                try:
                    target[key] = json.loads(value) if _is_structured(field.annotation) else value
                except json.JSONDecodeError as err:
                    raise ConfigError(f"{name}: expected JSON for this field ({err.msg})") from err
                break
            model = _model_of(field.annotation)
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                break
    return found


def _merge(low: dict[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    """`high` over `low`, table by table."""
    merged = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(cls: type[S], config_file: Path | None = None, **overrides: Any) -> S:
    """Build settings from flags (`overrides`), environment and an optional TOML file."""
    from_file: dict[str, Any] = {}
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"{config_file}: no such config file")
        try:
            from_file = tomllib.loads(config_file.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{config_file}: {err}") from err
    sources = [from_file, _from_environment(cls, cls.env_prefix, os.environ), overrides]
    merged: dict[str, Any] = {}
    for source in sources:
        merged = _merge(merged, source)
    layers: dict[str, Any] = {}
    for source in sources:
        layers = _merge(layers, cls.upgraded(source, merged))
    try:
        return cls.model_validate(layers)
    except ValidationError as err:
        raise ConfigError(f"invalid settings: {one_line(err)}") from err
