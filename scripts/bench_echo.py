"""Does the speaker hear itself? Self-wakes and barge-in on the acoustic rig (reported, never asserted).

    python -m scripts.bench_echo [--replies 100] [--barge-ins 40] [--out reports/echo_bench.json]

Replies that say the wake word, spoken by the device's own voices (espeak-ng, its
default, and Piper), are played into the simulated room (`scripts.echo_room`) at full
volume: the echo as loud as the reply, and in a second room a clipping loudspeaker 6 dB
louder. Counted: how often the device's default wake detection wakes on them, with the
echo canceller and without. Barge-in: a person says the wake word over a reply, 10 dB
over the echo, at its level and 10 dB under it, in a quiet room and over household
noise; counted: how often the word is still heard. Also the canceller's CPU per second
of audio while it works, and the memory its import and state add.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from contract.audio import SAMPLE_RATE_HZ
from firmware.assistant.voice import EspeakVoice
from firmware.wake import WakeSettings, WakeWordDetector
from scripts.echo_room import Reply, Room, frames_through, scene, wakes_in
from scripts.speech import pink_noise, piper
from tests.conftest import FIXTURES, load_pcm

WAKE_LINES = (
    "Alexa here.",
    "This is Alexa.",
    "I am Alexa.",
    "You asked Alexa.",
    "Alexa, at your service.",
    "Alexa, Alexa, that is me.",
    "Yes, this is Alexa speaking.",
    "Alexa heard you.",
    "Hello from Alexa.",
    "Ask Alexa anything.",
)
TOPICS = (
    "The kitchen lights are on.",
    "The timer is set for ten minutes.",
    "It is sunny and mild today.",
    "Milk is on the shopping list.",
    "It is half past seven.",
    "The music is playing in the living room.",
    "The alarm is set for six.",
    "The front door is locked.",
    "The volume is at fifty percent.",
    "Your meeting starts at three.",
)
ROOMS = {
    "full volume": Room(),
    "clipping loudspeaker, +6 dB": Room(echo_gain=2.0, clipping=True, rt60_seconds=0.5),
    "full volume, audio thread stalling 0.3 s every 2 s": Room(stall_every_seconds=2.0),
}


def reply_texts(count: int) -> list[str]:
    """`count` replies that each say the wake word, before or after what they answer."""
    texts = []
    for i in range(count):
        line, topic = WAKE_LINES[i % len(WAKE_LINES)], TOPICS[(i // len(WAKE_LINES)) % len(TOPICS)]
        texts.append(f"{line} {topic}" if i % 2 == 0 else f"{topic} {line}")
    return texts


def espeak_reply(text: str) -> Reply:
    """A reply as the speaker's default voice makes it (espeak-ng, 22,050 Hz)."""
    speech = EspeakVoice("en-us", 165).speak(text)
    return Reply(b"".join(speech.chunks), speech.sample_rate_hz)


def piper_reply(text: str) -> Reply:
    """A reply in Piper's voice (the rig takes it at 16 kHz)."""
    return Reply(piper(text).astype("<i2").tobytes(), SAMPLE_RATE_HZ)


def voices(count: int) -> Iterator[tuple[str, str, Reply]]:
    for text in reply_texts(count):
        yield "espeak-ng", text, espeak_reply(text)
        yield "piper", text, piper_reply(text)


def self_wakes(detector: WakeWordDetector, count: int) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    tally: dict[str, dict[str, int]] = {}
    for voice, _text, reply in voices(count):
        for room_name, room in ROOMS.items():
            heard = scene(reply, room, rng, starts_seconds=1.0 + rng.uniform(0, 0.08))  # any phase vs the frames
            for cancel in (False, True):
                key = f"{voice}, {room_name}, {'echo cancelled' if cancel else 'no echo cancellation'}"
                counts = tally.setdefault(key, {"replies": 0, "woke": 0, "wakes": 0})
                found = wakes_in(detector, frames_through(heard, room, cancel=cancel))
                counts["replies"] += 1
                counts["woke"] += bool(found)
                counts["wakes"] += len(found)
    return tally


def barge_ins(detector: WakeWordDetector, count: int) -> dict[str, Any]:
    """A person says the wake word 1 s into a reply; heard if a wake comes within 1.5 s of its end."""
    rng = np.random.default_rng(11)
    talkers = [load_pcm(p) for p in sorted((FIXTURES / "positives").glob("alexa_*.wav"))]
    talkers.append(load_pcm(FIXTURES / "alexa_only.wav"))
    talkers.append(piper("Alexa"))
    noise = pink_noise(30.0, rng)
    tally: dict[str, dict[str, int]] = {}
    room = ROOMS["full volume"]
    for i, text in enumerate(reply_texts(count)):
        reply = espeak_reply(TOPICS[i % len(TOPICS)] + " " + text.replace("Alexa", "the assistant"))
        talker = talkers[i % len(talkers)]
        for talker_db, noisy in ((10.0, False), (0.0, False), (-10.0, False), (0.0, True)):
            heard = scene(
                reply,
                room,
                rng,
                starts_seconds=1.0 + rng.uniform(0, 0.08),
                talker=talker,
                talker_at_seconds=2.0,
                talker_db=talker_db,
                noise=noise if noisy else None,
            )
            window = (2.0, 2.0 + len(talker) / SAMPLE_RATE_HZ + 1.5)
            for cancel in (False, True):
                name = f"talker {talker_db:+.0f} dB vs echo{', pink noise 10 dB under echo' if noisy else ''}"
                key = f"{name}, {'echo cancelled' if cancel else 'no echo cancellation'}"
                counts = tally.setdefault(key, {"tries": 0, "heard": 0})
                found = wakes_in(detector, frames_through(heard, room, cancel=cancel))
                counts["tries"] += 1
                counts["heard"] += any(window[0] <= at <= window[1] for at in found)
    return tally


def canceller_cost() -> dict[str, float]:
    """CPU per second of audio with the reference active, and the RSS the canceller adds."""
    rng = np.random.default_rng(3)
    reply = espeak_reply(" ".join(TOPICS))
    room = ROOMS["full volume"]
    heard = scene(reply, room, rng)
    frames_through(heard, room, cancel=False)  # the rig's own cost, outside the measurement
    started = time.process_time()
    frames = frames_through(heard, room, cancel=True)
    with_cancel = time.process_time() - started
    started = time.process_time()
    frames_through(heard, room, cancel=False)
    without = time.process_time() - started
    seconds = len(frames) * 0.08
    return {
        "audio_seconds": round(seconds, 1),
        "cpu_ms_per_audio_second": round((with_cancel - without) / seconds * 1000, 2),
        "rss_mib_added": float(subprocess.check_output([sys.executable, "-c", _RSS_PROBE], text=True)),
    }


# In a fresh process: resident memory before the canceller is made, and after it has run
# on 10 s of audio with a reference playing.
_RSS_PROBE = """
import numpy as np
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
from firmware.audio.echo import EchoCanceller, EchoReference  # the speaker has these loaded anyway
reference = EchoReference()
before = rss()
canceller = EchoCanceller(reference)  # imports pywebrtc_audio
noise = np.random.default_rng(1).integers(-3000, 3000, 1280).astype("<i2").tobytes()
for _ in range(125):
    reference.played(noise)
    canceller.clean(noise)
print(round((rss() - before) / 2**20, 1))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=100, help="replies per voice")
    parser.add_argument("--barge-ins", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("reports/echo_bench.json"))
    args = parser.parse_args()
    cost = canceller_cost()
    detector = WakeWordDetector(WakeSettings())
    result = {
        "detection": detector.describe(),
        "canceller": cost,
        "self_wakes": self_wakes(detector, args.replies),
        "barge_in": barge_ins(detector, args.barge_ins),
        "rooms": {name: room.__dict__ for name, room in ROOMS.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
