"""A WAV file reader with specific errors, for any PCM rate, width and channel count.

Python's `wave` module (3.11) rejects WAVE_FORMAT_EXTENSIBLE and float files, which
common recorders write, and says nothing useful about truncation; this parser does.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from contract.audio import SAMPLE_RATE_HZ
from firmware.audio.convert import Resampler, to_wire_pcm
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


@dataclass(frozen=True)
class _Layout:
    """Where a WAV file's audio is, and how it is encoded."""

    info: WavInfo
    data_offset: int
    data_bytes: int  # whole frames only


def _layout(path: Path) -> _Layout:
    """Parse the headers, reading no more of the file than they take (audio stays on disk)."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, "is a directory, not a WAV file") from None
    except OSError as err:
        raise _fail(path, f"cannot read: {err.strerror}") from err
    with handle:
        length = os.fstat(handle.fileno()).st_size
        head = handle.read(12)
        if not head:
            raise _fail(path, "empty file")
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            raise _fail(path, "not a WAV file (no RIFF/WAVE header)")
        if head[:4] == b"RIFX":
            raise _fail(path, "big-endian RIFX WAV is not supported")
        fmt: tuple[int, int, int, int] | None = None
        offset = 12
        while offset + 8 <= length:
            handle.seek(offset)
            chunk_id, size = struct.unpack("<4sI", handle.read(8))
            body_start = offset + 8
            if chunk_id == b"fmt ":
                fmt = _parse_fmt(path, handle.read(min(size, 1024)))
            elif chunk_id == b"data":
                if fmt is None:
                    raise _fail(path, "corrupt WAV: data chunk comes before the fmt chunk")
                tag, channels, rate, bits = fmt
                available = length - body_start
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
                info = WavInfo(rate, channels, bits, tag, usable // frame_width)
                return _Layout(info, body_start, usable)
            offset = body_start + size + (size & 1)  # RIFF chunks are word-aligned
    if fmt is None:
        raise _fail(path, "truncated or corrupt WAV: no fmt chunk")
    raise _fail(path, "truncated or corrupt WAV: no data chunk")


def _needs_scipy(path: Path, rate: int) -> None:
    if rate == SAMPLE_RATE_HZ:
        return
    try:
        import scipy.signal  # noqa: F401 - only whether it is there
    except ModuleNotFoundError as err:  # scipy is not part of a speaker's install
        raise _fail(
            path, f"{rate} Hz audio needs resampling to 16 kHz: install scipy, or `sox IN -r 16000 OUT.wav`"
        ) from err


def read_wav(path: Path) -> tuple[WavInfo, bytes]:
    """Read a WAV file and return its format and its audio as wire-format PCM."""
    source = WavFileSource(path)
    return source.info, b"".join(source.blocks())


class WavFileSource:
    """Frames from a WAV file, converted to the wire format block by block: an hour of
    audio is never in memory at once (decoded whole, it took ~2 GB)."""

    def __init__(self, path: Path, block_seconds: float = 10.0) -> None:
        self.name = str(path)
        self._path = path
        # The headers, the encoding and the resampler are checked before any audio is read.
        self._layout = _layout(path)
        self.info = self._layout.info
        _needs_scipy(path, self.info.sample_rate_hz)
        self._block_frames = max(int(block_seconds * self.info.sample_rate_hz), 1)

    def blocks(self) -> Iterator[bytes]:
        """The file's audio as wire-format PCM, in blocks of about `block_seconds`."""
        info = self.info
        width = info.channels * info.bits_per_sample // 8
        wire = info.format_tag == _PCM and info.bits_per_sample == 16 and info.channels == 1
        resampler = None if info.sample_rate_hz == SAMPLE_RATE_HZ else Resampler(info.sample_rate_hz)
        with self._path.open("rb") as handle:
            handle.seek(self._layout.data_offset)
            left = self._layout.data_bytes
            while left > 0:
                data = handle.read(min(left, self._block_frames * width))
                if not data:
                    raise _fail(self._path, "the file got shorter while it was read")
                left -= len(data)
                if wire and resampler is None:
                    yield data  # already the wire format: nothing to convert
                    continue
                samples = _decode(data, info.format_tag, info.channels, info.bits_per_sample)
                mono = samples.mean(axis=1) if info.channels > 1 else samples[:, 0]
                if resampler is not None:
                    mono = resampler.feed(mono, last=left == 0)
                yield to_wire_pcm(mono, SAMPLE_RATE_HZ)

    def frames(self) -> Iterator[bytes]:
        """Yield the file's audio as 80 ms frames."""
        return frames_of(self.blocks())

    def close(self) -> None:
        """Nothing to release (each pass opens the file); present for the AudioSource interface."""
