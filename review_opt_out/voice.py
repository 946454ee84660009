"""Spoken privacy commands: a device heard "delete what I just said" and asks the registry.

A device is untrusted, so what it sends is a claim the registry checks, never an order:
- the household is the one the cloud enrolled the device in, never one the device names;
- every action can only narrow what is kept or reviewed (the contract has no "allow
  review"; turning review on takes the app, because anyone in the room can talk);
- "just said" means this device's own last request, found by the cloud's receipt times;
- a device gets a few commands a minute, and the queue in front of the registry is bounded.

The answer goes back on the device's results topic, where it speaks it.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from contract import topics
from contract.errors import ContractError
from contract.messages import PrivacyAction, PrivacyReply, PrivacyRequest, decode_json, encode_json
from contract.mqtt import MqttSettings, build_client, connect_in_background
from review_opt_out.errors import NotFound
from review_opt_out.registry import Channel, Registry

_LOGGER = logging.getLogger(__name__)

COMMANDS_PER_MINUTE = 6  # far above what anyone says, far below what a script sends
_DEVICES_REMEMBERED = 10_000
_QUEUE_COMMANDS = 256


class CommandRate:
    """At most `per_minute` commands per device in any sliding minute; memory bounded."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._seen: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def allow(self, device_id: str) -> bool:
        """Count one command; False when the device is over its rate."""
        now = self._clock()
        recent = self._seen.pop(device_id, None) or collections.deque()
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        self._seen[device_id] = recent
        while len(self._seen) > _DEVICES_REMEMBERED:
            self._seen.popitem(last=False)
        if len(recent) >= self._per_minute:
            return False
        recent.append(now)
        return True


def answer(registry: Registry, device_id: str, request: PrivacyRequest) -> PrivacyReply:
    """Carry out one spoken privacy command for `device_id`, as far as the registry allows."""

    def reply(ok: bool, **extra: Any) -> PrivacyReply:
        return PrivacyReply(request_id=request.request_id, action=request.action, ok=ok, **extra)

    household_id = registry.device_household(device_id)
    if household_id is None:
        return reply(False, code="unknown_device")
    try:
        action = request.action
        if action is PrivacyAction.REVIEW_STATUS:
            return reply(True, review_allowed=registry.household(household_id).review_allowed)
        if action is PrivacyAction.STOP_REVIEW:
            household = registry.household(household_id)
            if household.review_allowed:
                household = registry.set_consent(household_id, False, f"voice:{device_id}", Channel.VOICE)
            return reply(True, review_allowed=household.review_allowed)
        deleted = registry.delete_spoken(
            device_id, str(request.utterance_id), today=action is PrivacyAction.DELETE_TODAY
        )
        return reply(True, deleted=deleted)
    except NotFound:
        return reply(False, code="unknown_household")


class VoiceCommands:
    """Background service: privacy commands from devices -> registry -> spoken answers."""

    def __init__(
        self,
        registry: Registry,
        mqtt_settings: MqttSettings,
        client_id: str,
        on_consent_change: Callable[[], None] = lambda: None,
        *,
        client_factory: Callable[..., Any] = build_client,
    ) -> None:
        self._registry = registry
        self._mqtt = mqtt_settings
        self._on_consent_change = on_consent_change
        self._client: Any = client_factory(mqtt_settings, client_id)
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=_QUEUE_COMMANDS)
        self._rate = CommandRate(COMMANDS_PER_MINUTE)
        self._thread = threading.Thread(target=self._run, name="voice-commands", daemon=True)
        self.subscribed = threading.Event()
        self.handled = 0
        self.refused: collections.Counter[str] = collections.Counter()

    def start(self) -> None:
        """Connect in the background and serve commands."""
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = lambda *_args: self.subscribed.clear()
        connect_in_background(self._client, self._mqtt, "the consent service's voice commands")
        self._thread.start()

    def stop(self) -> None:
        """Finish the command in hand, then disconnect."""
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe(topics.privacy_filter(), qos=1)

    def _on_subscribe(self, _client: Any, _userdata: Any, _mid: Any, reason_codes: Any, _props: Any) -> None:
        if not any(code.is_failure for code in reason_codes):
            self.subscribed.set()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        if message.retain:
            self.refused["retained"] += 1  # a command is said once, never replayed to a new subscriber
            return
        try:
            self._queue.put_nowait((message.topic, bytes(message.payload)))
        except queue.Full:
            self.refused["queue_full"] += 1

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            topic, payload = item
            try:
                self._handle(topic, payload)
            except ContractError as err:
                self.refused[err.code] += 1
                _LOGGER.warning("refused a privacy command on %s: %s", topic[:200], err.code)
            except Exception:
                self.refused["internal_error"] += 1
                _LOGGER.exception("a privacy command failed")

    def _handle(self, topic: str, payload: bytes) -> None:
        device_id = topics.device_of(topic)
        if topic != topics.privacy(device_id):
            raise ContractError("bad_topic", "not a privacy topic")
        request = decode_json(PrivacyRequest, payload)
        if not self._rate.allow(device_id):
            raise ContractError("rate_limited", "too many privacy commands from one device")
        reply = answer(self._registry, device_id, request)
        if request.action is PrivacyAction.STOP_REVIEW and reply.ok:
            self._on_consent_change()  # the signed consent goes out now, not at the next poll
        self.handled += 1
        _LOGGER.info("privacy command %s from a device: ok=%s", request.action.value, reply.ok)
        self._client.publish(topics.results(device_id), encode_json(reply), qos=1)
