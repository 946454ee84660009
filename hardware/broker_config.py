"""Device identity and the broker's access rules.

Every device gets its own username (= its device id) and a random password at
provisioning; the pipeline and the consent service have identities of their own. The
ACL lets a device publish only under its own `devices/{id}/` topics, read only its own
results and its household's consent message, and never write any consent message.

    earmark provision --devices devices.toml --out DIR [--tls] [--hostname broker.example.org] [--bind ADDRESS]

writes `passwords` (mosquitto_passwd format), `acl`, optional TLS material, a
`mosquitto.conf` that uses them, and `credentials.toml` with the generated passwords
(give each device its own via earmark flash; keep the file offline).

Run it again with a changed devices.toml to add or remove speakers: accounts still
listed keep their passwords, the CA and the broker's certificate are kept, a new device
gets a new account and a removed one loses its account and ACL. `credentials.toml` then
holds the new passwords plus any earlier ones still in it. A running broker picks the
change up on SIGHUP.

Everything is checked before anything is written; the files are made in a staging
directory beside DIR's and then moved in, so a run that fails leaves DIR as it was.
Every file is created 0600 in a 0700 directory. Run as root, the files the broker reads
are handed to `--broker-user` (default `mosquitto`, the user mosquitto drops to), which
must be able to reach DIR; the CA key and credentials.toml stay root's. Without --tls
the listener binds 127.0.0.1 unless --bind says otherwise: passwords never cross a
network in clear text by default. devices.toml:

    [[device]]
    device_id = "kitchen-1"
    household_id = "h-42"

The parts, one job each: `broker_accounts` (identities, password hashes, the ACL),
`broker_tls` (the CA and the broker's certificate), `mosquitto_conf` (the broker's
config), `broker_files` (private files, staging, handing them to the broker's user).
This module runs them in order and is their public face.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from contract.cli import OneLineParser, entry
from contract.config import ConfigError
from contract.errors import EarmarkError, report
from hardware.broker_accounts import (
    CONSENT_USER,
    PIPELINE_USER,
    Change,
    DeviceEntry,
    Identity,
    acl_text,
    new_identity,
    password_line,
    pipeline_users,
    plan_accounts,
    write_password_file,
)
from hardware.broker_files import check_reachable, commit, hand_to_broker_user, staging_dir, write_private
from hardware.broker_tls import check_tls, make_tls
from hardware.mosquitto_conf import common_conf_lines, mosquitto_conf

__all__ = [
    "CONSENT_USER",
    "PIPELINE_USER",
    "Change",
    "DeviceEntry",
    "Identity",
    "acl_text",
    "check_tls",
    "common_conf_lines",
    "hand_to_broker_user",
    "main",
    "make_tls",
    "mosquitto_conf",
    "new_identity",
    "password_line",
    "pipeline_users",
    "plan_accounts",
    "provision",
    "write_password_file",
    "write_private",
]


def provision(
    out: Path, devices: list[DeviceEntry], workers: int, tls_hostname: str | None, port: int, bind: str,
    broker_user: str | None,
) -> tuple[Change, bool]:  # fmt: skip
    """Check everything, make the broker's files beside `out`, then move them in; returns (change, tls).

    Any error leaves `out` as it was (or absent): a half-written directory would hold
    passwords in credentials.toml that no broker knows, or the reverse.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: not a directory")
    if broker_user is not None:
        if os.geteuid() != 0:
            raise ConfigError("--broker-user needs root: only root can hand the files to another user")
        check_reachable(broker_user, out)
    change, files = plan_accounts(out, devices, workers)
    if tls_hostname is not None:
        check_tls(out, tls_hostname)
    with staging_dir(out) as work:
        for name, text in files.items():
            write_private(work / name, text)
        tls = None if tls_hostname is None else make_tls(out, tls_hostname, into=work)
        for leftover in ("server.csr", "server.ext"):
            (work / leftover).unlink(missing_ok=True)  # only openssl's working files
        state = out / "state"  # the broker's persistence: the only place it writes
        if not state.is_dir():
            (work / "state").mkdir(mode=0o700)
        write_private(work / "mosquitto.conf", mosquitto_conf(port, out, tls, bind, broker_user, state))
        if broker_user is not None:
            hand_to_broker_user(work, broker_user)  # before the move: the broker never sees root-only files
        commit(work, out)
    if broker_user is not None:
        hand_to_broker_user(out, broker_user)  # the files this run kept, and a directory it did not make
    return change, tls is not None


def _default_broker_user() -> str | None:
    import pwd

    if os.geteuid() != 0:
        return None  # mosquitto started by this user does not drop to another
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        return None
    return "mosquitto"


def main(argv: Sequence[str] | None = None, prog: str = "earmark provision") -> int:
    """Entry point of `earmark provision` (`prog`: the name it reports under)."""
    return entry(prog, lambda args: _main(args, prog), argv)


def _main(argv: list[str], prog: str) -> int:
    import tomllib

    parser = OneLineParser(prog=prog, description="broker identities, ACL and TLS")
    parser.add_argument(
        "--devices",
        type=Path,
        required=True,
        help="TOML listing your speakers: [[device]] tables with device_id and household_id",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for mosquitto.conf, passwords, ACL, keys")
    parser.add_argument("--tls", action="store_true", help="make a CA and a server certificate; listen with TLS")
    parser.add_argument("--hostname", default="localhost", help="the broker's name on its certificate")
    parser.add_argument("--port", type=int, default=8883, help="the broker's port (default 8883)")
    parser.add_argument("--bind", help="listen address (default: 0.0.0.0 with --tls, else 127.0.0.1)")
    parser.add_argument(
        "--broker-user", help="run as root: the user mosquitto drops to and that gets its files (default: mosquitto)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="pipeline workers, each with an account of its own (default: 1)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 999:
        parser.error("--workers must be 1-999")
    # Without TLS, passwords would cross the network in clear text: loopback unless asked.
    bind = args.bind or ("0.0.0.0" if args.tls else "127.0.0.1")  # noqa: S104 - a TLS broker listens for devices
    out: Path = args.out.resolve()  # absolute paths in mosquitto.conf work from any directory
    try:
        try:
            entries = tomllib.loads(args.devices.read_text()).get("device", [])
            devices = [DeviceEntry(e["device_id"], e["household_id"]) for e in entries]
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as err:
            raise ConfigError(f"{args.devices}: {err}") from err
        broker_user = args.broker_user or _default_broker_user()
        hostname = args.hostname if args.tls else None
        change, tls = provision(out, devices, args.workers, hostname, args.port, bind, broker_user)
        summary = [f"added {', '.join(change.added)}" if change.added else "added nobody"]
        if change.removed:
            summary.append(f"removed {', '.join(change.removed)}")
        summary.append(f"kept {len(change.kept)} account{'s' * (len(change.kept) != 1)}")
        print(f"wrote {out}: {'; '.join(summary)}" + (" (TLS)" if tls else ""))  # noqa: T201
        if change.added or change.removed:
            print("a running broker takes the change on SIGHUP: sudo kill -HUP $(pidof mosquitto)")  # noqa: T201
        return 0
    except EarmarkError as err:
        return report(prog, err)


if __name__ == "__main__":
    raise SystemExit(main())
