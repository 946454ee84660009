"""`earmark device` as a user runs it: real files, raw stdin, and a real ALSA capture device.

No sound card exists here, so the microphone is ALSA's own `file` plugin reading a raw
file, wrapped in `plug` at 16 kHz mono S16_LE. PyAudio opens it by name through
PortAudio exactly as it would open a USB microphone.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import numpy as np
import pytest

from contract.audio import SAMPLE_RATE_HZ
from firmware.audio.source import SAMPLE_WAV
from tests.conftest import FIXTURES, REPO, Pcm, load_pcm, run_cli

ASOUNDRC = """\
pcm.nullsink {{ type null }}
pcm.filemic {{ type file  slave.pcm "nullsink"  file "/dev/null"
              infile "{infile}"  format "raw" }}
pcm.fakemic {{ type plug  slave {{ pcm "filemic" format S16_LE rate 16000 channels 1 }}
              hint {{ show on description "file-backed test microphone" }} }}
"""


def alsa_home(tmp_path: Path, pcm: Pcm) -> dict[str, str]:
    """A HOME whose .asoundrc defines `fakemic`, a capture device that plays `pcm`."""
    raw = tmp_path / "mic.raw"
    raw.write_bytes(pcm.astype("<i2").tobytes())
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(ASOUNDRC.format(infile=raw))
    return {"HOME": str(home)}


def kinds(events: list[dict[str, object]]) -> list[object]:
    return [e["type"] for e in events if e["type"] != "state_changed"]


def test_sample_wav_gives_wake_speech_and_silence_end(tmp_path: Path) -> None:
    result = run_cli("listen", "--input", str(SAMPLE_WAV), "--save-dir", str(tmp_path / "saved"))
    assert result.returncode == 0, result.stderr
    events = result.events
    assert kinds(events) == ["wake_detected", "speech_started", "speech_ended", "utterance_ready"]
    assert events[1]["wake_word"] == "alexa"
    ended = next(e for e in events if e["type"] == "speech_ended")
    assert ended["reason"] == "silence"
    ready = next(e for e in events if e["type"] == "utterance_ready")
    assert "audio" not in ready  # audio never goes to stdout

    saved = Path(str(ready["saved_to"]))
    assert saved.parent == tmp_path / "saved" and saved.suffix == ".wav"
    with wave.open(str(saved)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SAMPLE_RATE_HZ, 1, 2)
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    source = load_pcm(SAMPLE_WAV)
    loud = np.flatnonzero(np.abs(source) > 1000)
    # The saved request holds every sample of the spoken audio, first word included.
    begin = round(float(events[1]["audio_time_seconds"]) * SAMPLE_RATE_HZ) - 19 * 1280
    assert begin <= loud[0]
    assert np.array_equal(audio[: len(source) - begin], source[begin:][: len(audio)])
    assert begin + len(audio) >= loud[-1]


def test_nothing_is_saved_unless_asked(tmp_path: Path) -> None:
    result = run_cli("listen", "--input", "sample", env={"HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert all("saved_to" not in e for e in result.events)
    # (onnxruntime, pulled in by openwakeword, drops a device-id file in ~/.cache.)
    assert list(tmp_path.rglob("*.wav")) == []


def test_raw_pcm_on_stdin() -> None:
    raw = load_pcm(SAMPLE_WAV).astype("<i2").tobytes()
    result = run_cli("listen", "--input", "-", stdin=raw)
    assert result.returncode == 0, result.stderr
    assert kinds(result.events) == ["wake_detected", "speech_started", "speech_ended", "utterance_ready"]


def test_wake_word_flag_picks_model_and_threshold() -> None:
    jarvis = FIXTURES / "positives" / "hey_jarvis_1.0.wav"
    only_alexa = run_cli("listen", "--input", str(jarvis), "--wake-word", "alexa")
    assert only_alexa.returncode == 0 and kinds(only_alexa.events) == []
    both = run_cli("listen", "--input", str(jarvis), "--wake-word", "alexa", "--wake-word", "hey_jarvis:0.6")
    assert both.returncode == 0, both.stderr
    assert [e["wake_word"] for e in both.events if e["type"] == "wake_detected"] == ["hey_jarvis"]


def test_alsa_capture_device_is_listed(tmp_path: Path) -> None:
    result = run_cli("devices", env=alsa_home(tmp_path, np.zeros(1600, dtype=np.int16)))
    assert result.returncode == 0, result.stderr
    assert "fakemic" in [e["name"] for e in result.events]


def test_alsa_capture_returns_the_samples_bit_for_bit(tmp_path: Path) -> None:
    pcm = (np.arange(SAMPLE_RATE_HZ * 2) * 7 % 60000 - 30000).astype(np.int16)
    script = textwrap.dedent(
        """
        import itertools, sys
        from firmware.audio.mic import MicrophoneSource
        source = MicrophoneSource("fakemic")
        data = b"".join(itertools.islice(source.frames(), int(sys.argv[1])))
        source.close()
        sys.stdout.buffer.write(data)
        """
    )
    frames_needed = -(-len(pcm) // 1280)
    done = subprocess.run(
        [sys.executable, "-c", script, str(frames_needed)],
        capture_output=True,
        env={**alsa_home(tmp_path, pcm), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=60,
        check=True,
    )
    captured = np.frombuffer(done.stdout, dtype="<i2")
    assert np.array_equal(captured[: len(pcm)], pcm)


def test_microphone_through_alsa_runs_the_whole_front_end(tmp_path: Path) -> None:
    env = alsa_home(tmp_path, load_pcm(SAMPLE_WAV))
    result = run_cli("listen", "--input", "mic", "--device", "fakemic", "--max-seconds", "6", env=env)
    assert result.returncode == 0, result.stderr
    assert kinds(result.events) == ["wake_detected", "speech_started", "speech_ended", "utterance_ready"]
    assert next(e for e in result.events if e["type"] == "speech_ended")["reason"] == "silence"


def make_bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    not_wav = tmp_path / "notes.wav"
    not_wav.write_text("this is not audio\n")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(SAMPLE_WAV.read_bytes()[:20000])
    ulaw = tmp_path / "ulaw.wav"
    subprocess.run(["sox", str(SAMPLE_WAV), "-e", "mu-law", str(ulaw)], check=True)
    return {
        "not-a-wav": (["--input", str(not_wav)], f"{not_wav}: not a WAV file"),
        "compressed": (["--input", str(ulaw)], f"{ulaw}: compressed WAV (mu-law"),
        "empty": (["--input", str(empty)], f"{empty}: empty file"),
        "truncated": (["--input", str(truncated)], f"{truncated}: truncated WAV"),
        "missing": (["--input", str(tmp_path / "nope.wav")], f"{tmp_path / 'nope.wav'}: no such file"),
        "no-such-device": (["--input", "mic", "--device", "usb-headset"], "mic 'usb-headset': no input device matches"),
        "bad-wake-word": (["--input", "sample", "--wake-word", "hey_siri"], "wake word model 'hey_siri'"),
        "bad-setting": (["--input", "sample", "--wake-word", "alexa:1.5"], "invalid settings: wake.words.0.threshold"),
    }


@pytest.mark.parametrize(
    "case",
    ["not-a-wav", "compressed", "empty", "truncated", "missing", "no-such-device", "bad-wake-word", "bad-setting"],
)
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path: Path, case: str) -> None:
    args, expected = make_bad_inputs(tmp_path)[case]
    result = run_cli("listen", *args, env=alsa_home(tmp_path, np.zeros(1600, dtype=np.int16)))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("earmark device: error: ") and expected in lines[0]
