"""How device and cloud reach the broker: one settings model, one client builder.

MQTT 5 everywhere: under 3.1.1 a publish the ACL denies still looks successful to the
client, while MQTT 5 answers "Not authorized".
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, SecretStr

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt


class MqttSettings(BaseModel):
    """Broker address and credentials."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = None
    keepalive_seconds: int = Field(30, ge=5, le=600)
    reconnect_min_seconds: int = Field(1, ge=1, le=60)
    reconnect_max_seconds: int = Field(30, ge=1, le=600)


def build_client(settings: MqttSettings, client_id: str) -> mqtt.Client:
    """A paho 2.x client (callback API v2, MQTT 5) configured but not yet connected."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, reconnect_on_failure=True
    )
    if settings.username is not None:
        password = settings.password.get_secret_value() if settings.password is not None else None
        client.username_pw_set(settings.username, password)
    if settings.tls:
        client.tls_set(
            ca_certs=str(settings.ca_file) if settings.ca_file else None, tls_version=ssl.PROTOCOL_TLS_CLIENT
        )
    client.reconnect_delay_set(min_delay=settings.reconnect_min_seconds, max_delay=settings.reconnect_max_seconds)
    return client
