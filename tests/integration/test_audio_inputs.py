"""WAV decoding of any rate/width/channels, raw stdin, and the framer."""

from __future__ import annotations

import io
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from contract.audio import FRAME_BYTES, SAMPLE_RATE_HZ
from firmware.audio.framer import frames_of
from firmware.audio.raw import RawStreamSource
from firmware.audio.wav import WavFileSource, read_wav
from firmware.errors import AudioInputError


def tone(rate: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * hz * t)


def dominant_hz(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE_HZ)[spectrum.argmax()])


def write_with_sox(tmp_path: Path, name: str, *encoding: str, rate: int = 44100, channels: int = 2) -> Path:
    path = tmp_path / name
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            str(rate),
            "-c",
            str(channels),
            *encoding,
            str(path),
            "synth",
            "1.0",
            "sine",
            "440",
            "vol",
            "0.5",
        ],
        check=True,
        capture_output=True,
    )
    return path


@pytest.mark.parametrize(
    ("encoding", "rate", "channels"),
    [
        (("-b", "8", "-e", "unsigned"), 8000, 1),
        (("-b", "16", "-e", "signed"), 44100, 2),
        (("-b", "24", "-e", "signed"), 48000, 2),
        (("-b", "32", "-e", "signed"), 22050, 1),
        (("-b", "32", "-e", "floating-point"), 16000, 6),
    ],
    ids=["u8-8k-mono", "s16-44k-stereo", "s24-48k-stereo", "s32-22k-mono", "f32-16k-6ch"],
)
def test_any_pcm_wav_becomes_16k_mono_s16(tmp_path: Path, encoding: tuple[str, ...], rate: int, channels: int) -> None:
    path = write_with_sox(tmp_path, "in.wav", *encoding, rate=rate, channels=channels)
    info, pcm = read_wav(path)
    assert (info.sample_rate_hz, info.channels) == (rate, channels)
    assert len(pcm) // 2 == pytest.approx(SAMPLE_RATE_HZ, abs=2)
    assert dominant_hz(pcm) == pytest.approx(440, abs=2)
    peak = np.abs(np.frombuffer(pcm, dtype="<i2")).max()
    assert 0.45 * 32768 < peak < 0.55 * 32768


def test_extensible_header_is_read(tmp_path: Path) -> None:
    # sox writes WAVE_FORMAT_EXTENSIBLE for more than 2 channels / more than 16 bits.
    path = write_with_sox(tmp_path, "ext.wav", "-b", "24", "-e", "signed", rate=16000, channels=4)
    assert struct.unpack("<H", path.read_bytes()[20:22])[0] == 0xFFFE
    info, pcm = read_wav(path)
    assert info.bits_per_sample == 24 and dominant_hz(pcm) == pytest.approx(440, abs=2)


def test_frames_are_fixed_size_and_nothing_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "odd.wav"
    samples = (np.arange(FRAME_BYTES // 2 * 3 + 17) % 1000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE_HZ)
        out.writeframes(samples.tobytes())
    frames = list(WavFileSource(path).frames())
    assert [len(f) for f in frames] == [FRAME_BYTES] * 4
    joined = b"".join(frames)
    assert joined[: samples.nbytes] == samples.tobytes() and not joined[samples.nbytes :].strip(b"\0")


def test_raw_stream_yields_the_same_bytes() -> None:
    data = bytes(range(256)) * 50
    frames = list(RawStreamSource(io.BytesIO(data)).frames())
    assert all(len(f) == FRAME_BYTES for f in frames)
    assert b"".join(frames)[: len(data)] == data


def test_framer_handles_uneven_chunks() -> None:
    chunks = [b"\x01" * 7, b"\x02" * (FRAME_BYTES * 2 - 7), b"\x03"]
    frames = list(frames_of(chunks))
    assert len(frames) == 3 and frames[2] == b"\x03" + bytes(FRAME_BYTES - 1)


def put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def make_truncated(tmp_path: Path) -> Path:
    good = write_with_sox(tmp_path, "good.wav", "-b", "16", "-e", "signed", rate=16000, channels=1)
    path = tmp_path / "truncated.wav"
    path.write_bytes(good.read_bytes()[:5000])
    return path


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda d: d / "missing.wav", "no such file"),
        (lambda d: put(d / "empty.wav", b""), "empty file"),
        (lambda d: put(d / "text.wav", b"hello, not audio\n"), "not a WAV file"),
        (make_truncated, "truncated WAV"),
        (lambda d: put(d / "hdr.wav", b"RIFF\x24\x00\x00\x00WAVEfmt "), "corrupt WAV"),
        (lambda d: write_with_sox(d, "ulaw.wav", "-e", "mu-law", rate=8000, channels=1), "compressed WAV (mu-law"),
        (lambda d: write_with_sox(d, "adpcm.wav", "-e", "ima-adpcm", rate=8000, channels=1), "compressed WAV"),
        (lambda d: d, "is a directory"),
    ],
    ids=["missing", "empty", "not-wav", "truncated", "header-only", "mu-law", "ima-adpcm", "directory"],
)
def test_bad_files_raise_a_specific_error(tmp_path: Path, make: object, problem: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(AudioInputError) as caught:
        read_wav(path)
    assert problem in str(caught.value)
    assert str(path) in str(caught.value)
    assert caught.value.code == "audio_input"
