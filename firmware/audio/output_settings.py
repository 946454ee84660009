"""What the speaker plays and how loud: one `[output]` table that both modes read.

These keys used to live twice, in `[assistant]` (cloud mode) and `[satellite]` (Home
Assistant mode), with different defaults and limits. `moved_to_output` still reads them
there for one release, with a warning, so a speaker's existing device.toml keeps working.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from firmware.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

OUTPUT_KEYS = frozenset({"sound_device", "sounds", "volume", "timer_rings"})
# The table each mode read these keys from before `[output]`; a mode's own table is the one it used.
_OLD_TABLES = {"cloud": "assistant", "home_assistant": "satellite"}
_warned: set[str] = set()  # each deprecation warning once per process, however often settings are loaded


class OutputSettings(BaseModel):
    """The loudspeaker: where sounds and replies play, whether the sounds play, how loud."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sound_device: str | None = Field(
        None, description="output device index or name substring (`earmark device devices`); default: ALSA's default"
    )
    sounds: bool = Field(True, description="wake, done, error and timer sounds")
    volume: float = Field(
        0.8, ge=0, le=1, description="loudness of sounds and replies (in cloud mode a voice command changes it)"
    )
    echo_cancellation: bool = Field(
        True, description="take what the loudspeaker plays out of the microphone (the speaker never hears itself)"
    )
    # One default for both modes (cloud mode had 5, Home Assistant mode 3): in both the same
    # sound rings and the wake word cuts it short, and ~4 s is heard from the next room. The
    # limit is the wider of the two they had (60, not 20), so every file that was valid still is.
    timer_rings: int = Field(5, ge=1, le=60, description="how many times a finished timer rings unless stopped")


def _same(key: str, one: Any, other: Any) -> bool:
    """Whether two raw values mean the same setting ("0.8" from the environment is 0.8)."""
    try:
        return bool(
            getattr(OutputSettings.model_validate({key: one}), key)
            == getattr(OutputSettings.model_validate({key: other}), key)
        )
    except ValidationError:
        return bool(one == other)  # the invalid one fails with its own name once moved


def moved_to_output(data: Any, mode: object = None) -> Any:
    """Raw device settings with the output keys of `[assistant]` and `[satellite]` moved to `[output]`.

    A key `[output]` sets wins, and an old one that differs from it is a ConfigError naming
    both. Otherwise the running mode's old table gives the value (what that mode played
    with before); the other mode's copy is dropped, as it never applied to this mode.
    `mode` is the running mode when `data` is one source of several; by default, `data`'s.
    """
    if not isinstance(data, Mapping):
        return data
    old: dict[str, dict[str, Any]] = {}  # table -> its output keys
    for table in _OLD_TABLES.values():
        section = data.get(table)
        if isinstance(section, Mapping) and OUTPUT_KEYS & section.keys():
            old[table] = {key: value for key, value in section.items() if key in OUTPUT_KEYS}
    if not old:
        return data
    output = data.get("output", {})
    if isinstance(output, BaseModel):
        output = output.model_dump(exclude_unset=True)
    if not isinstance(output, Mapping):
        return data  # not a table: validation names it
    output = dict(output)
    for table, values in old.items():
        for key, value in values.items():
            if key in output and not _same(key, output[key], value):
                raise ConfigError(
                    f"output.{key} = {output[key]!r} and {table}.{key} = {value!r} differ: remove {table}.{key}"
                    f" (deprecated; both modes read output.{key})"
                )
    # A DeviceMode (a str enum) or its text; missing: cloud, the default.
    active = _OLD_TABLES.get(str(data.get("mode", "cloud") if mode is None else mode), "assistant")
    for key, value in old.get(active, {}).items():
        output.setdefault(key, value)
    moved = {**data, "output": output}
    for table in old:
        moved[table] = {key: value for key, value in data[table].items() if key not in OUTPUT_KEYS}
    names = sorted(f"{table}.{key}" for table, values in old.items() for key in values)
    _warn_once(
        f"{', '.join(names)}: deprecated, read for this release only; move them to the [output] table, which"
        f" both modes read (until then this mode uses [{active}]'s)"
    )
    return moved


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        _LOGGER.warning("%s", message)
