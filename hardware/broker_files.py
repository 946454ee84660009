"""Putting the broker's files on disk safely: private from the first byte, made in a
staging directory and moved in only when complete, and handed to the broker's user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from contract.config import ConfigError


def write_private(path: Path, text: str) -> None:
    """Write a file that only its owner can read, and was never readable by anyone else."""
    # O_CREAT's mode applies from the first byte; fchmod narrows a file that existed
    # before, after O_TRUNC emptied it and before anything new is written.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(fd, 0o600)
        file.write(text)


def _umask() -> int:
    current = os.umask(0o077)
    os.umask(current)
    return current


def _broker_account(user: str) -> tuple[int, int]:
    """The uid and gid of the broker's user, or ConfigError naming it."""
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError as err:
        raise ConfigError(f"--broker-user {user}: no such user on this machine") from err
    return entry.pw_uid, entry.pw_gid


def check_reachable(user: str, directory: Path) -> None:
    """Raise ConfigError if `user` cannot walk down to `directory` (mosquitto would fail later, less clearly)."""
    import grp

    uid, gid = _broker_account(user)
    groups = {gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    for parent in reversed(directory.parents):
        if parent.exists():
            info = parent.stat()
            owner, group, mode = info.st_uid, info.st_gid, info.st_mode & 0o777
        else:  # made by this run like `mkdir -p`: ours, with the umask's mode
            owner, group, mode = os.geteuid(), os.getegid(), 0o777 & ~_umask()
        if owner == uid:
            ok = mode & 0o100
        elif group in groups:
            ok = mode & 0o010
        else:
            ok = mode & 0o001
        if not ok:
            raise ConfigError(
                f"the broker's user {user} cannot reach {directory}: {parent} is{' to be' * (not parent.exists())}"
                f" mode {mode:o}; choose an --out such as /etc/earmark/broker"
            )


def hand_to_broker_user(out: Path, user: str) -> None:
    """Let the broker's user read what it needs and write only its own state.

    DIR stays root's (group: the broker's, 0750), so a compromised broker cannot replace
    the CA, the keys or credentials.toml that the next run keeps; the files it reads are
    root's and group-readable; `state/` (its persistence) is its own.
    """
    uid, gid = _broker_account(user)
    if uid == 0:
        return  # a broker run as root (tests, or by choice) reads everything already
    readable = {"mosquitto.conf", "passwords", "acl", "ca.crt", "server.crt", "server.key"}
    os.chown(out, 0, gid)
    out.chmod(0o750)
    for path in out.iterdir():
        if path.name in readable:
            os.chown(path, 0, gid, follow_symlinks=False)
            path.chmod(0o640)
    state = out / "state"
    if state.exists():
        for path in [state, *state.iterdir()]:
            os.chown(path, uid, gid, follow_symlinks=False)


@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A private directory on `out`'s file system for the new files; removed unless they were moved out."""
    if out.exists():
        work = Path(tempfile.mkdtemp(prefix=".provision-", dir=out))
    else:
        base = next(parent for parent in out.parents if parent.exists())
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.provision-", dir=base))
    try:
        yield work
    finally:
        if work.exists():
            shutil.rmtree(work)


def commit(work: Path, out: Path) -> None:
    """Move the staged files into `out` (a new `out` is the staging directory renamed)."""
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        work.rename(out)
        return
    # The plain passwords first: a password line whose password was never written down
    # (a crash between two moves) would make the next run keep an account nobody can flash.
    for path in sorted(work.iterdir(), key=lambda path: path.name != "credentials.toml"):
        path.replace(out / path.name)  # atomic per file: a reader sees the old file or the new one
