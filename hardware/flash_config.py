"""What `earmark flash --config` reads: the `[device]` table that describes one new speaker.

Each rule's error reads as a person would say it (`device.wifi.password: must be 8 to 63
printable ASCII characters (or 64 hex digits)`), not as pydantic names its constraint
("String should match pattern …"), and never repeats the value: it may be a secret.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from contract import topics
from contract.config import ConfigError, one_line
from firmware.satellite.settings import DeviceMode


def _says(message: str) -> WrapValidator:
    """Any error of this field reads `message`: the rule in words, without the value."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("flash_value", message) from None

    return WrapValidator(check)


def _wpa_passphrase(value: SecretStr) -> SecretStr:
    """WPA2: a passphrase of 8-63 printable ASCII characters, or 64 hex digits."""
    text = value.get_secret_value()
    if not (re.fullmatch(r"[ -~]{8,63}", text) or re.fullmatch(r"[0-9a-fA-F]{64}", text)):
        raise ValueError("not a WPA2 passphrase")  # the field's `_says` words it
    return value


def _one_printable_line(value: SecretStr | None) -> SecretStr | None:
    """It becomes one line of a systemd EnvironmentFile: no line break may add another."""
    if value is not None and not re.fullmatch(r"[!-~]{1,256}", value.get_secret_value()):
        raise ValueError("not one printable line")  # the field's `_says` words it
    return value


_ID_RULE = "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"


class WifiSettings(BaseModel):
    """The network the speaker joins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ssid: Annotated[str, _says("must be 1 to 32 characters on one line")] = Field(
        min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$"
    )
    password: Annotated[
        SecretStr,
        AfterValidator(_wpa_passphrase),
        _says("must be 8 to 63 printable ASCII characters (or 64 hex digits)"),
    ] = Field(min_length=8, max_length=64)
    country: Annotated[str, _says("must be a two-letter country code in capitals, e.g. GB")] = Field(
        "GB", pattern=r"^[A-Z]{2}$"
    )


class FlashConfig(BaseModel):
    """Everything a new speaker needs to come up: enroll with the Earmark cloud, or serve
    the household's Home Assistant (then the cloud fields may be left out)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hostname: Annotated[
        str, _says("must be 1 to 63 lowercase letters, digits or '-', starting with a letter or digit")
    ] = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    ssh_public_key: Annotated[str, _says("must be one OpenSSH public key line, e.g. ssh-ed25519 AAAA… you@laptop")] = (
        Field(pattern=r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+( .*)?$")
    )
    mode: Annotated[DeviceMode, _says("must be cloud or home_assistant")] = Field(
        DeviceMode.CLOUD, description="cloud, or home_assistant (a Wyoming satellite)"
    )
    area: Annotated[str | None, _says("must be at most 63 characters")] = Field(
        None, max_length=63, description="home_assistant mode: the area Home Assistant suggests"
    )
    device_id: Annotated[topics.SafeId | None, _says(_ID_RULE)] = None
    household_id: Annotated[topics.SafeId | None, _says(_ID_RULE)] = None
    broker_url: Annotated[
        str | None, _says("must start with mqtt:// or mqtts://, then a host and maybe :port (nothing after)")
    ] = Field(None, pattern=r"^mqtts?://[^/:]+(:\d+)?$")
    device_password: Annotated[
        SecretStr | None,
        AfterValidator(_one_printable_line),
        _says("must be 1 to 256 printable ASCII characters without spaces"),
    ] = None
    ca_certificate: Annotated[str | None, _says("must be the text of a PEM certificate")] = Field(
        None, description="PEM of the broker's CA, for mqtts"
    )
    consent_public_key: Annotated[
        str | None, _says("must be a PEM public key, from -----BEGIN PUBLIC KEY----- to -----END PUBLIC KEY-----")
    ] = Field(
        None,
        pattern=r"^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END PUBLIC KEY-----\n?$",
        description="PEM the consent service signs with (`earmark review setup` prints where it is)",
    )
    wifi: WifiSettings | None = None
    username: Annotated[str, _says("must be 1 to 32 lowercase letters, digits or '-', starting with a letter")] = Field(
        "earmark-admin", pattern=r"^[a-z][a-z0-9-]{0,31}$"
    )
    audio: Annotated[
        Literal["usb", "respeaker-2mic-v1", "respeaker-2mic-v2"],
        _says("must be usb, respeaker-2mic-v1 or respeaker-2mic-v2"),
    ] = "usb"

    @model_validator(mode="after")
    def _cloud_needs_its_fields(self) -> FlashConfig:
        if self.mode is DeviceMode.CLOUD:
            missing = [f for f in _CLOUD_FIELDS if getattr(self, f) is None]
            if missing:
                raise PydanticCustomError(
                    "flash_cloud",
                    "mode 'cloud' needs {missing} (or set mode = \"home_assistant\")",
                    {"missing": ", ".join(missing)},
                )
        return self


_CLOUD_FIELDS = ("device_id", "household_id", "broker_url", "device_password", "consent_public_key")


# pydantic's words for what no field's own rule covers.
_WORDS = {
    "missing": "required",
    "extra_forbidden": "not a setting earmark flash knows (a typo?)",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
}


class _FlashFile(BaseModel):
    """The TOML file `earmark flash --config` reads."""

    model_config = ConfigDict(extra="forbid")

    device: FlashConfig

    @model_validator(mode="wrap")
    @classmethod
    def _in_words(cls, data: Any, handler: ModelWrapValidatorHandler[_FlashFile]) -> _FlashFile:
        try:
            return handler(data)
        except ValidationError as err:
            words = [
                InitErrorDetails(
                    type=PydanticCustomError(e["type"], _WORDS.get(e["type"], e["msg"])), loc=e["loc"], input=e["input"]
                )
                for e in err.errors()
            ]
            raise ValidationError.from_exception_data(cls.__name__, words) from None


def load_flash_config(path: Path) -> FlashConfig:
    """The `[device]` table of the user's config file, or ConfigError naming that file and each bad field."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read ({getattr(err, 'strerror', None) or err})") from err
    try:
        return _FlashFile.model_validate(tomllib.loads(text)).device
    except ValidationError as err:
        raise ConfigError(f"{path}: {one_line(err)}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({str(err).splitlines()[0]})") from err
