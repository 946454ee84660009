"""Cloud mode on the device: the uplink, and the assistant answering what comes back.

The device assembly (`firmware/device.py`), which the CLI (`earmark device listen
--stream`, behind `earmark up`) and the speaker service share, starts it here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contract.config import ConfigError
from contract.messages import PrivacyReply, RecognitionResult, UtteranceCancelled
from firmware.assistant.assistant import Assistant, Record, cancelled_record
from firmware.assistant.intents import IntentMatcher
from firmware.assistant.voice import load_voice
from firmware.audio.output import Player
from firmware.audio.output_settings import OutputSettings
from firmware.consent_cache import ConsentCache
from firmware.events import FrontEndEvent, WakeDetected
from firmware.frontend import FrontEnd
from firmware.settings import DeviceSettings
from firmware.uplink import Uplink

_LOGGER = logging.getLogger(__name__)


@dataclass
class CloudSession:
    """What runs beside the front end in cloud mode."""

    uplink: Uplink
    assistant: Assistant | None
    player: Player | None

    def between_frames(self, frontend: FrontEnd) -> None:
        """On the audio thread: apply what the cloud cancelled (another speaker answers)."""
        while (utterance_id := self.uplink.cancelled_utterance()) is not None:
            frontend.cancel(utterance_id)

    def stop(self) -> None:
        """Assistant first (it may still speak), then the output, then the uplink."""
        if self.assistant is not None:
            self.assistant.stop()
        if self.player is not None:
            self.player.close()
        self.uplink.stop()


def start_cloud_session(
    settings: DeviceSettings,
    frontend: FrontEnd,
    on_line: Callable[[str], None],
    *,
    reply_dir: Path | None = None,
    open_player: Callable[[OutputSettings], Player | None],
) -> CloudSession:
    """Start the uplink (and the assistant unless switched off); `on_line` gets one JSON
    line per transcript, intent, answer and cancellation (the CLI prints them; the
    service logs them at DEBUG: they hold what the household said)."""
    if settings.identity is None:
        raise ConfigError("streaming needs a device identity: --device-id and --household-id (or identity.* settings)")
    consent = ConsentCache.open(settings.state_dir, settings.identity.household_id, settings.consent_public_key)
    answering: list[Assistant] = []

    def on_result(result: RecognitionResult) -> None:
        on_line(result_line(result))
        for assistant in answering:
            assistant.on_result(result)

    def on_cloud(message: UtteranceCancelled | PrivacyReply) -> None:
        if not answering and isinstance(message, UtteranceCancelled):
            on_line(json.dumps(cancelled_record(message)))
        for assistant in answering:
            assistant.on_cloud(message)

    uplink = Uplink(settings.identity, settings.mqtt, settings.uplink, consent, on_result=on_result, on_cloud=on_cloud)
    frontend.subscribe(uplink.handle)
    assistant = player = None
    if settings.assistant.enabled:
        assistant, player = start_assistant(
            settings,
            frontend,
            uplink,
            lambda record: on_line(json.dumps(record, ensure_ascii=False)),
            open_player,
            reply_dir,
        )
        answering.append(assistant)
    uplink.start()
    return CloudSession(uplink, assistant, player)


def start_assistant(
    settings: DeviceSettings,
    frontend: FrontEnd,
    uplink: Uplink | None,
    on_record: Callable[[Record], None],
    open_player: Callable[[OutputSettings], Player | None],
    reply_dir: Path | None = None,
) -> tuple[Assistant, Player | None]:
    """Load sentences and voice, open the output (not when replies go to `reply_dir`), start."""
    options = settings.assistant
    matcher = IntentMatcher(options.language, options.custom_sentences_dir)
    voice = load_voice(options)
    player = None if reply_dir is not None else open_player(settings.output)
    assistant = Assistant(
        options,
        matcher,
        voice,
        player,
        output=settings.output,
        send_privacy=uplink.send_privacy if uplink is not None else None,
        on_record=on_record,
        reply_dir=reply_dir,
    )
    quiet_seconds = assistant.echo_seconds()

    def keep_own_sound_out(event: FrontEndEvent) -> None:
        if isinstance(event, WakeDetected) and quiet_seconds:
            frontend.quiet_for(quiet_seconds)

    frontend.subscribe(keep_own_sound_out)
    frontend.subscribe(assistant.handle)
    assistant.start()
    return assistant, player


_NOT_RECOGNIZED = {
    "no_recognizer": "not transcribed: the cloud runs without a speech recognizer (earmark models fetch-default)",
    "muted": "not transcribed: the request was cut off by the mute button",
}


def result_line(result: RecognitionResult) -> str:
    """The JSON line the CLI prints for a recognition result (with a note when nothing was recognized)."""
    line = {**result.model_dump(mode="json", exclude_none=True), "type": "transcript"}
    if result.not_recognized is not None:
        line["note"] = _NOT_RECOGNIZED[result.not_recognized]
    return json.dumps(line, ensure_ascii=False)
