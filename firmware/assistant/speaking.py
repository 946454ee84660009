"""A reply said aloud: streamed to the speaker as it is synthesized, or saved as a WAV.

Replies go to files instead of the speaker when `reply_dir` is set (the CLI's replies
folder, the tests). A wake word cuts a reply mid-sentence: synthesis for the speaker stops
there, while a file still gets the whole reply. Kept out of the assistant, which decides
what to say; this only says it.
"""

from __future__ import annotations

import contextlib
import threading
import wave
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

from firmware.assistant.voice import Voice
from firmware.audio.output import Begin, Player

_REMEMBERED_FIRST_AUDIO = 1000  # bounds `first_audio_at` on a speaker that runs for months


class ReplySpeaker:
    """Speaks the assistant's replies (on its worker thread); `barge_in` comes from the audio thread."""

    def __init__(
        self, voice: Voice | None, player: Player | None, reply_dir: Path | None, clock: Callable[[], float]
    ) -> None:
        self._voice = voice
        self._player = player
        self._reply_dir = reply_dir
        self._clock = clock
        self._barge_ins = 0  # counts wake words: a reply being spoken stops when this moves
        self._speaking = threading.Event()
        self.first_audio_at: dict[UUID, float] = {}  # for the benchmark: when a reply's first sample was played

    @property
    def speaking(self) -> bool:
        """A spoken reply is playing now."""
        return self._speaking.is_set()

    def barge_in(self) -> None:
        """A wake word was heard: the reply being synthesized goes no further to the speaker."""
        self._barge_ins += 1

    def silenced(self) -> None:
        """The output was cut: nothing is being said any more."""
        self._speaking.clear()

    def speak(self, utterance_id: UUID, text: str) -> Path | None:
        """Say `text` (with no voice, nothing); returns the WAV it was saved to, if replies go to files."""
        if self._voice is None:
            return None
        speech = self._voice.speak(text)
        writer = None
        path = partial = None
        if self._reply_dir is not None:
            self._reply_dir.mkdir(parents=True, exist_ok=True)
            path = self._reply_dir / f"{utterance_id}.wav"
            partial = path.with_suffix(".wav.part")
            writer = wave.open(str(partial), "wb")  # noqa: SIM115 - closed below
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(speech.sample_rate_hz)
        play = self._player is not None and self._reply_dir is None
        barge_ins = self._barge_ins
        try:
            if play:
                assert self._player is not None  # noqa: S101
                self._player.begin(
                    Begin(speech.sample_rate_hz, 2, 1, on_started=lambda: self._first_audio(utterance_id))
                )
            for chunk in speech.chunks:
                if writer is not None:
                    writer.writeframes(chunk)
                if play and self._barge_ins != barge_ins:
                    play = False  # cut off by a wake word: synthesize no further for the speaker
                    if writer is None:
                        break
                if play:
                    assert self._player is not None  # noqa: S101
                    self._player.write(chunk)
        finally:
            if play:
                assert self._player is not None  # noqa: S101
                self._player.end(self._speaking.clear)
            if writer is not None and partial is not None and path is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    partial.replace(path)  # a reader never sees half a reply
        return path

    def _first_audio(self, utterance_id: UUID) -> None:
        self.first_audio_at[utterance_id] = self._clock()
        self._speaking.set()
        if len(self.first_audio_at) > _REMEMBERED_FIRST_AUDIO:
            self.first_audio_at.pop(next(iter(self.first_audio_at)))
