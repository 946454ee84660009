"""mosquitto.conf: what every broker Earmark configures, and the provisioned broker's listener."""

from __future__ import annotations

from pathlib import Path

from contract.limits import MAX_MESSAGE_BYTES, MAX_PACKET_BYTES


def mosquitto_conf(port: int, broker_dir: Path, tls: tuple[Path, Path, Path] | None,
                   bind: str = "0.0.0.0", user: str | None = None,  # noqa: S104 - a broker listens for devices
                   state_dir: Path | None = None) -> str:  # fmt: skip
    """A broker config: a password on every connection, the ACL, size limits, persistence in `broker_dir`."""
    lines = [
        f"listener {port} {bind}",
        "allow_anonymous false",
        f"password_file {broker_dir / 'passwords'}",
        f"acl_file {broker_dir / 'acl'}",
        # The client id becomes the username: a device cannot connect as
        # `earmark-pipeline` and so take over (disconnect) the pipeline's session.
        "use_username_as_clientid true",
        *common_conf_lines(state_dir or broker_dir),
    ]
    if tls is not None:
        ca, cert, key = tls
        lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}", "tls_version tlsv1.2"]
    if user is not None:
        lines.append(f"user {user}")  # the account mosquitto drops to when started as root
    return "\n".join(lines) + "\n"


def common_conf_lines(persistence_dir: Path | None) -> list[str]:
    """What every broker Earmark configures has: size limits, no Nagle delay, deep queues, persistence."""
    lines = [
        # Nothing legal comes near these sizes: refuse the rest before it sits in memory.
        f"message_size_limit {MAX_MESSAGE_BYTES}",
        f"max_packet_size {MAX_PACKET_BYTES}",
        # Audio chunks and results are small and latency-bound (the clients set it too).
        "set_tcp_nodelay true",
        # mosquitto silently drops QoS 1 messages queued past max_queued_messages
        # (default 1000) for a subscriber that falls behind; a burst must not be lost.
        "max_queued_messages 200000",
    ]
    if persistence_dir is None:
        return [*lines, "persistence false"]
    # Queued audio, sessions and retained consent survive a broker restart.
    return [*lines, "persistence true", f"persistence_location {persistence_dir}"]
