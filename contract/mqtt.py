"""How device and cloud reach the broker: one settings model, one client builder, one way to connect.

MQTT 5 everywhere: under 3.1.1 a publish the ACL denies still looks successful to the
client, while MQTT 5 answers "Not authorized".
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from contract.limits import MAX_PACKET_BYTES

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

_LOGGER = logging.getLogger(__name__)


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

    @property
    def address(self) -> str:
        """`mqtt[s]://host:port`, for the lines a person reads."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


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


def connect_in_background(client: Any, settings: MqttSettings, who: str) -> None:
    """Connect (and reconnect) on paho's thread: no Nagle delay, a packet size limit, loud failures.

    Set the client's own `on_connect`/`on_message` first; this adds `on_socket_open`
    and `on_connect_fail` and starts the network thread.
    """
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    outage_logged = False

    def on_socket_open(_client: Any, _userdata: Any, sock: Any) -> None:
        nonlocal outage_logged
        # Audio chunks and results are small and latency-bound: Nagle's algorithm held
        # each one back waiting for an ACK (~25 ms of the end-of-speech latency).
        if hasattr(sock, "setsockopt"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if outage_logged:
            _LOGGER.warning("%s reached the broker at %s again", who, settings.address)
        outage_logged = False

    def on_connect_fail(_client: Any, _userdata: Any) -> None:
        nonlocal outage_logged
        # paho calls this inside its `except OSError` block and passes no reason: the
        # exception being handled is the reason.
        reason = sys.exc_info()[1] or "refused"
        if not outage_logged:
            _LOGGER.warning(
                "%s cannot reach the broker at %s (%s); retrying every %d-%d s",
                who,
                settings.address,
                reason,
                settings.reconnect_min_seconds,
                settings.reconnect_max_seconds,
            )
        outage_logged = True

    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.MaximumPacketSize = MAX_PACKET_BYTES  # the broker drops anything larger for us
    client.on_socket_open = on_socket_open
    client.on_connect_fail = on_connect_fail
    client.connect_async(settings.host, settings.port, settings.keepalive_seconds, properties=properties)
    client.loop_start()
