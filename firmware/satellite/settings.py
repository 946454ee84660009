"""Settings of satellite mode (Home Assistant over Wyoming)."""

from __future__ import annotations

import enum
import ipaddress
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from firmware.audio.output_settings import OUTPUT_KEYS


class DeviceMode(enum.StrEnum):
    """Where a request goes after the wake word; chosen per device, switched by a setting."""

    CLOUD = "cloud"  # the Earmark cloud over MQTT: consent-tagged clips, Vosk
    HOME_ASSISTANT = "home_assistant"  # the household's Home Assistant over Wyoming; nothing to the cloud


def on_every_interface(host: str) -> bool:
    """Whether a listen address means every interface (then probes use loopback and
    discovery announces each LAN address)."""
    return host in ("", "0.0.0.0")  # noqa: S104 - comparing, not binding


class SatelliteSettings(BaseModel):
    """The Wyoming server Home Assistant connects to (what the speaker plays on: `OutputSettings`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    moved_fields: ClassVar[frozenset[str]] = OUTPUT_KEYS  # now [output]; still read for one release

    host: str = Field(
        "0.0.0.0",  # noqa: S104 - Home Assistant runs on another machine of the LAN
        description="address to listen on; Wyoming has no authentication, so keep it on the home network",
    )
    port: int = Field(10700, ge=0, le=65535, description="Wyoming's usual satellite port (0: any free port)")
    name: str | None = Field(
        None, min_length=1, max_length=63, description="the name Home Assistant shows; default: the host name"
    )
    area: str | None = Field(None, max_length=63, description="suggested Home Assistant area, e.g. Kitchen")
    preroll_seconds: float = Field(
        0.3,
        ge=0,
        le=1.5,
        description="audio from before the wake word fired that Home Assistant receives; the wake word"
        " itself lies before it, and speech-to-text would otherwise hear it as part of the request",
    )
    zeroconf: bool = Field(
        True, description="advertise _wyoming._tcp so Home Assistant discovers the speaker (never on loopback)"
    )
    allowed_peers: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = Field(
        (),
        max_length=32,
        description='addresses or networks that may connect at all, e.g. ["192.168.1.20"] for Home Assistant;'
        " empty: any, and the first to run the speaker is pinned",
    )
    idle_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="a connection that is not running the speaker and sends nothing this long is closed",
    )
