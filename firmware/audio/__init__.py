"""Audio inputs that yield fixed 80 ms frames of 16 kHz mono signed 16-bit PCM."""
