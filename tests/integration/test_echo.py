"""The speaker does not hear itself: replies that say the wake word, played into the
acoustic rig's room (scripts/echo_room.py), through the device's real echo canceller and
wake-word detection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from firmware.wake import WakeSettings, WakeWordDetector
from scripts.bench_echo import espeak_reply, reply_texts
from scripts.echo_room import Room, echo_return_loss_db, frames_through, scene, wakes_in
from tests.conftest import FIXTURES, REPO, load_pcm

# A loudspeaker that writes what it plays to a file, through PortAudio and ALSA as on a Pi.
ASOUNDRC = """\
pcm.nullsink {{ type null }}
pcm.speakerfile {{ type file  slave.pcm "nullsink"  file "{played}"  format "raw"
                  hint {{ show on description "file-backed test loudspeaker" }} }}
"""
# In a child process: ALSA reads this HOME's .asoundrc once, when PortAudio starts.
PLAY_A_REPLY = """
import sys, threading, time
import numpy as np
from firmware.audio.echo import EchoReference, position
from firmware.audio.output import Begin, Player
began = position(time.monotonic())
reference = EchoReference(max_seconds=5.0)
player = Player("speakerfile", 1.0, reference)
t = np.arange(22050) / 22050
done = threading.Event()
player.play(np.full(1600, 5000, dtype="<i2").tobytes())  # a sound: not a reference (people talk over it)
player.begin(Begin(22050, 2, 1))
player.write((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())
player.end(done.set)
assert done.wait(30), "never played"
player.close()
taken = reference.take(began + 30 * 16000, 30 * 16000)  # from before it began, however slow PortAudio is
first = int(np.flatnonzero(taken)[0]) - 1  # where the sine starts (its first sample is 0)
np.save(sys.argv[1], taken[first:])
"""


@pytest.fixture(scope="module")
def detector() -> WakeWordDetector:
    return WakeWordDetector(WakeSettings())  # the device's default detection


def test_replies_that_say_the_wake_word_never_wake_the_speaker(detector: WakeWordDetector) -> None:
    rng = np.random.default_rng(7)
    rooms = (Room(), Room(echo_gain=2.0, clipping=True, rt60_seconds=0.5))
    woke = {False: 0, True: 0}
    for i, text in enumerate(reply_texts(8)):
        room = rooms[i % 2]
        heard = scene(espeak_reply(text), room, rng)
        for cancel in (False, True):
            woke[cancel] += bool(wakes_in(detector, frames_through(heard, room, cancel=cancel)))
    assert woke[False] >= 2  # without the canceller these replies do wake it: the rig is a real test
    assert woke[True] == 0


@pytest.mark.parametrize("output_buffer_seconds", [0.02, 0.2])
def test_the_echo_is_removed_however_the_player_and_the_audio_thread_are_timed(output_buffer_seconds: float) -> None:
    """The player hands over just in time or far ahead, at every phase against the
    microphone's frames, and the audio thread stalls and catches up in a burst: the
    reference still sits where its echo is (counting samples did not: one phase lost
    half its cancellation)."""
    reply = espeak_reply("The kitchen lights are on. The timer is set for ten minutes. It is half past seven.")
    for starts_seconds in (1.0, 1.02, 1.04, 1.07):
        for stall in (None, 1.0):
            room = Room(output_buffer_seconds=output_buffer_seconds, stall_every_seconds=stall)
            heard = scene(reply, room, np.random.default_rng(1), starts_seconds=starts_seconds)
            removed = echo_return_loss_db(heard, frames_through(heard, room, cancel=True), 3.0, 5.5)
            assert removed > 35, (starts_seconds, stall, removed)


def test_the_wake_word_right_after_a_reply_is_heard_as_before(detector: WakeWordDetector) -> None:
    """Once the reply is over, while the canceller still runs for the echo's tail, what a
    person says passes it as it would without."""
    rng = np.random.default_rng(3)
    room = Room()
    reply = espeak_reply("The timer is set for ten minutes.")
    talker = load_pcm(FIXTURES / "positives" / "alexa_1.0.wav")
    ends_seconds = 1.0 + room.output_buffer_seconds + len(reply.pcm) / 2 / reply.sample_rate_hz
    heard = scene(reply, room, rng, talker=talker, talker_at_seconds=ends_seconds + 0.1, talker_db=-6.0)
    plain = wakes_in(detector, frames_through(heard, room, cancel=False))
    cleaned = frames_through(heard, room, cancel=True)
    during_tail = int((ends_seconds + 0.5) / 0.08)  # the word is under way while the canceller works
    assert cleaned[during_tail] != heard.mic[during_tail * 1280 : (during_tail + 1) * 1280].tobytes()
    woke = wakes_in(detector, cleaned)
    assert len(plain) == 1 and plain[0] >= ends_seconds
    assert len(woke) == 1 and abs(woke[0] - plain[0]) <= 0.16


def test_a_gap_in_the_input_before_a_reply_costs_no_cancellation() -> None:
    """Muted for half a second just before the reply: the frames after it are placed anew
    (as after any gap the device's loop reports), not where they would have followed on."""
    reply = espeak_reply("The kitchen lights are on. The timer is set for ten minutes.")
    room = Room()
    heard = scene(reply, room, np.random.default_rng(1), starts_seconds=1.2)
    cleaned = frames_through(heard, room, cancel=True, muted=(0.4, 0.9))
    assert echo_return_loss_db(heard, cleaned, 1.5, 3.5) > 25  # as without the gap (30); 1-4 dB placed on


def test_the_reference_is_what_the_loudspeaker_played(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    played_file = tmp_path / "played.raw"
    (home / ".asoundrc").write_text(ASOUNDRC.format(played=played_file))
    taken_file = tmp_path / "taken.npy"
    subprocess.run(
        [sys.executable, "-c", PLAY_A_REPLY, str(taken_file)],
        cwd=REPO,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=60,
    )
    played = np.frombuffer(played_file.read_bytes(), dtype="<i2").astype(np.float64)
    assert len(played) == 22_050  # the reply at its own rate (the file plugin starts anew per stream)
    taken = np.load(taken_file).astype(np.float64)
    at_16k = np.interp(np.arange(15_900) * 22_050 / 16_000, np.arange(len(played)), played)
    assert np.max(np.abs(taken[:15_900] - at_16k)) <= 1.0
