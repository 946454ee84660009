"""A WAV file reader with specific errors, for any PCM rate, width and channel count.

Python's `wave` module (3.11) rejects WAVE_FORMAT_EXTENSIBLE and float files, which
common recorders write, and says nothing useful about truncation; this parser does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from contract.audio import FRAME_BYTES
from firmware.audio.convert import to_wire_pcm
from firmware.audio.framer import frames_of
from firmware.errors import AudioInputError

_PCM = 0x0001
_IEEE_FLOAT = 0x0003
_EXTENSIBLE = 0xFFFE
_KNOWN_COMPRESSED = {
    0x0002: "Microsoft ADPCM",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0055: "MPEG layer 3",
}
# Streaming writers (arecord to a pipe, crashed recorders) leave these placeholder sizes.
_UNKNOWN_DATA_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF}


@dataclass(frozen=True)
class WavInfo:
    """The format of a decoded WAV file."""

    sample_rate_hz: int
    channels: int
    bits_per_sample: int
    format_tag: int
    frame_count: int


def _fail(path: Path, problem: str) -> AudioInputError:
    return AudioInputError(str(path), problem)


def _parse_fmt(path: Path, body: bytes) -> tuple[int, int, int, int]:
    if len(body) < 16:
        raise _fail(path, "corrupt WAV: fmt chunk is shorter than 16 bytes")
    tag, channels, rate, _byte_rate, _align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE:
        if len(body) < 26:
            raise _fail(path, "corrupt WAV: extensible fmt chunk is too short")
        (tag,) = struct.unpack("<H", body[24:26])
    if tag in _KNOWN_COMPRESSED:
        raise _fail(
            path,
            f"compressed WAV ({_KNOWN_COMPRESSED[tag]}, format tag 0x{tag:04x}) is not supported;"
            " convert it to PCM, e.g. `sox IN -e signed -b 16 OUT.wav`",
        )
    if tag not in (_PCM, _IEEE_FLOAT):
        raise _fail(path, f"unsupported WAV encoding (format tag 0x{tag:04x}); need PCM or float")
    if channels < 1:
        raise _fail(path, "corrupt WAV: zero channels")
    if rate < 1000 or rate > 384_000:
        raise _fail(path, f"unsupported sample rate {rate} Hz")
    valid_bits = {_PCM: (8, 16, 24, 32), _IEEE_FLOAT: (32, 64)}[tag]
    if bits not in valid_bits:
        raise _fail(path, f"unsupported sample width of {bits} bits for this encoding")
    return tag, channels, rate, bits


def _decode(data: bytes, tag: int, channels: int, bits: int) -> npt.NDArray[np.float64]:
    if tag == _IEEE_FLOAT:
        samples = np.frombuffer(data, dtype="<f4" if bits == 32 else "<f8").astype(np.float64)
    elif bits == 8:
        samples = (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif bits == 16:
        samples = np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0
    elif bits == 24:
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        samples = value.astype(np.float64) / float(1 << 23)
    else:
        samples = np.frombuffer(data, dtype="<i4").astype(np.float64) / float(1 << 31)
    return samples.reshape(-1, channels)


def read_wav(path: Path) -> tuple[WavInfo, bytes]:
    """Read a WAV file and return its format and its audio as wire-format PCM."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, "is a directory, not a WAV file") from None
    except OSError as err:
        raise _fail(path, f"cannot read: {err.strerror}") from err
    if not blob:
        raise _fail(path, "empty file")
    if len(blob) < 12 or blob[:4] not in (b"RIFF", b"RIFX") or blob[8:12] != b"WAVE":
        raise _fail(path, "not a WAV file (no RIFF/WAVE header)")
    if blob[:4] == b"RIFX":
        raise _fail(path, "big-endian RIFX WAV is not supported")

    fmt: tuple[int, int, int, int] | None = None
    offset = 12
    while offset + 8 <= len(blob):
        chunk_id = blob[offset : offset + 4]
        (size,) = struct.unpack("<I", blob[offset + 4 : offset + 8])
        body_start = offset + 8
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(path, blob[body_start : body_start + size])
        elif chunk_id == b"data":
            if fmt is None:
                raise _fail(path, "corrupt WAV: data chunk comes before the fmt chunk")
            tag, channels, rate, bits = fmt
            available = len(blob) - body_start
            if size in _UNKNOWN_DATA_SIZES and size > available:
                size = available
            if size > available:
                raise _fail(
                    path,
                    f"truncated WAV: data chunk declares {size} bytes but only {available} are present",
                )
            frame_width = channels * bits // 8
            usable = size - size % frame_width
            if usable == 0:
                raise _fail(path, "WAV contains no audio")
            samples = _decode(blob[body_start : body_start + usable], tag, channels, bits)
            info = WavInfo(rate, channels, bits, tag, samples.shape[0])
            try:
                return info, to_wire_pcm(samples, rate)
            except ModuleNotFoundError as err:  # scipy is not part of a speaker's install
                raise _fail(
                    path, f"{rate} Hz audio needs resampling to 16 kHz: install scipy, or `sox IN -r 16000 OUT.wav`"
                ) from err
        offset = body_start + size + (size & 1)  # RIFF chunks are word-aligned
    if fmt is None:
        raise _fail(path, "truncated or corrupt WAV: no fmt chunk")
    raise _fail(path, "truncated or corrupt WAV: no data chunk")


class WavFileSource:
    """Frames from a WAV file, converted to the wire format."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        # Decoding up front makes every format error surface before any audio is processed.
        self.info, self._pcm = read_wav(path)

    def frames(self) -> Iterator[bytes]:
        """Yield the file's audio as 80 ms frames."""
        step = FRAME_BYTES * 64
        return frames_of(self._pcm[i : i + step] for i in range(0, len(self._pcm), step))

    def close(self) -> None:
        """Nothing to release; present for the AudioSource interface."""
