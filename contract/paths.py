"""Where Earmark keeps its data on this machine: one directory for everything.

`--data-dir`, else `EARMARK_DATA_DIR`, else `$XDG_DATA_HOME/earmark` (normally
`~/.local/share/earmark`). Inside it: `cloud/` (clips, database, keys, the app's
certificate), `device/` (a local speaker's state), `broker/` (`earmark up`'s mosquitto)
and `models/` (Vosk models).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "EARMARK_DATA_DIR"


def data_root(explicit: Path | None = None) -> Path:
    """The data directory: the one given, else the environment's, else the XDG default."""
    if explicit is not None:
        return explicit.expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(xdg) / "earmark"


def cloud_dir(root: Path | None = None) -> Path:
    """Clips, the consent database, keys and the app's certificate."""
    return data_root(root) / "cloud"


def models_dir(root: Path | None = None) -> Path:
    """Vosk models (`earmark models`)."""
    return data_root(root) / "models"


def local_speaker_config(root: Path | None = None) -> Path:
    """The settings of the speaker `earmark up` runs on this machine: it writes them, its
    speaker reads them, and `earmark doctor` checks them when given no other file."""
    return data_root(root) / "device" / "device.toml"
