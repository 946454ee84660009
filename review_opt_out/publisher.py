"""Publishes each household's consent as a retained MQTT message, retrying until acknowledged.

The registry commits a consent change together with an outbox row; this loop takes
unpublished rows, publishes them retained at QoS 1, and marks a row published only
when the broker has acknowledged that exact version. A broker outage delays the
message; it never loses it, and a newer change supersedes an older one in the outbox.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from contract import topics
from contract.mqtt import MqttSettings, build_client
from review_opt_out.registry import Registry

_LOGGER = logging.getLogger(__name__)


class ConsentPublisher:
    """Background thread: outbox -> retained consent messages."""

    def __init__(self, registry: Registry, mqtt_settings: MqttSettings, client_id: str = "earmark-consent") -> None:
        self._registry = registry
        self._mqtt = mqtt_settings
        self._client: Any = build_client(mqtt_settings, client_id)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="consent-publisher", daemon=True)
        self.connected = threading.Event()
        self.published = 0

    def start(self) -> None:
        """Connect in the background and start publishing."""
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.connect_async(self._mqtt.host, self._mqtt.port, self._mqtt.keepalive_seconds)
        self._client.loop_start()
        self._thread.start()

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if not reason_code.is_failure:
            self.connected.set()
            self._wake.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self.connected.clear()

    def notify(self) -> None:
        """A consent change was committed: publish now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the loop and disconnect."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self._client.disconnect()
        self._client.loop_stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)  # poll too: a change may come from another process
            self._wake.clear()
            if not self.connected.is_set():
                continue
            try:
                self._publish_pending()
            except Exception:
                _LOGGER.exception("consent publishing failed; retrying")

    def _publish_pending(self) -> None:
        for household_id, version, payload in self._registry.unpublished_consent():
            info = self._client.publish(topics.consent(household_id), payload, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=5.0)
            except (RuntimeError, ValueError):
                return  # not connected after all; the next round retries
            if info.is_published():
                self._registry.mark_published(household_id, version)
                self.published += 1
                _LOGGER.info("published consent v%d for a household", version)
