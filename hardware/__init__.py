"""Putting Earmark on a Raspberry Pi: flashing, provisioning, systemd, ALSA and GPIO."""
