"""Publishes each household's signed consent as a retained MQTT message, retrying until acknowledged.

The registry commits a consent change together with an outbox row (already signed);
this loop takes unpublished rows, publishes them retained at QoS 1, and marks a row
published only when the broker has acknowledged that exact version. A broker outage
delays the message; it never loses it, and a newer change supersedes an older one in
the outbox. Each time it (re)connects it republishes *every* household's current
state: a broker restarted without persistence has forgotten its retained messages,
and a device that was away would otherwise keep its old tag.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from contract import topics
from contract.mqtt import MqttSettings, build_client, connect_in_background
from review_opt_out.registry import Registry

_LOGGER = logging.getLogger(__name__)


class ConsentPublisher:
    """Background thread: outbox -> retained consent messages."""

    def __init__(self, registry: Registry, mqtt_settings: MqttSettings, client_id: str = "earmark-consent") -> None:
        self._registry = registry
        self._mqtt = mqtt_settings
        self._client: Any = build_client(mqtt_settings, client_id)
        self._wake = threading.Event()
        self._republish = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="consent-publisher", daemon=True)
        self.connected = threading.Event()
        self.published = 0
        self.republished = 0

    def start(self) -> None:
        """Connect in the background and start publishing."""
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        connect_in_background(self._client, self._mqtt, "the consent service")
        self._thread.start()

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if not reason_code.is_failure:
            self._republish.set()
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
                if self._republish.is_set():
                    self._republish.clear()
                    self._republish_all()
                self._publish_pending()
            except Exception:
                _LOGGER.exception("consent publishing failed; retrying")

    def _publish_pending(self) -> None:
        self._publish(self._registry.unpublished_consent())

    def _republish_all(self) -> None:
        after = ""
        while page := self._registry.consent_page(after):
            if not self._publish(page):
                self._republish.set()  # lost the broker midway: start over at the next connect
                return
            self.republished += len(page)
            after = page[-1][0]
        _LOGGER.info("republished the consent of %d households", self.republished)

    def _publish(self, rows: list[tuple[str, int, bytes]]) -> bool:
        """Publish retained at QoS 1; mark each acknowledged version published. False if the broker went away."""
        sent = [(h, v, self._client.publish(topics.consent(h), p, qos=1, retain=True)) for h, v, p in rows]
        for household_id, version, info in sent:
            try:
                info.wait_for_publish(timeout=5.0)
            except (RuntimeError, ValueError):
                return False  # not connected after all; the next round retries
            if not info.is_published():
                return False
            self._registry.mark_published(household_id, version)
            self.published += 1
        return True
