"""`earmark review`: the consent service, its admin commands, and the audit verifier."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import json
import logging
import os
import ssl
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

from pydantic import ConfigDict

from contract import paths
from contract.cli import OneLineParser, add_database_arguments, database_url, entry
from contract.config import ConfigError, LayeredSettings, load_settings
from contract.errors import EarmarkError, report
from contract.mqtt import MqttSettings
from pipeline.clip_schema import Checkpointer, database_path
from pipeline.database import check_url
from review_opt_out import audit, audit_proof, auth, https_port, lan, members, signing, tls
from review_opt_out.registry import Registry
from review_opt_out.web_guard import LOOPBACK_HOSTS

_LOGGER = logging.getLogger(__name__)
# The same address every run, so a phone's bookmark keeps working.
DEFAULT_APP_PORT = 8443
# Clips the sampler considers between checks for a stop (a few seconds of work).
SAMPLER_PASS_CLIPS = 10_000


def _password(path: Path | None) -> str:
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as err:
            raise ConfigError(f"--password-file {path}: {err.strerror}") from err
    if not sys.stdin.isatty():
        raise ConfigError("no password: give --password-file FILE, or run this in a terminal to type it")
    try:
        return getpass.getpass("password: ")
    except EOFError as err:
        raise ConfigError("no password was typed") from err


def apply_retention(registry: Registry) -> int:
    """Delete what a household's auto-delete or "don't keep" setting says must go."""
    return registry.apply_retention()


def _background(
    registry: Registry, fraction: float, interval_seconds: float, stop: threading.Event, tally: Callable[[], None]
) -> None:
    while not stop.wait(interval_seconds):
        try:
            # Passes until caught up, not one per interval: a pass of 10,000 a minute is
            # 170 clips/s, and a million speakers store 347/s at peak.
            while not stop.is_set():
                _admitted, considered = registry.sample_pass(fraction, SAMPLER_PASS_CLIPS)
                if considered < SAMPLER_PASS_CLIPS:
                    break
            apply_retention(registry)
            tally()
            with registry.transaction() as db:  # a signed head per interval, so none can be rewritten unseen
                audit_proof.sign_head_if_grown(db, registry.signer)
        except Exception:
            _LOGGER.exception("sampling or retention failed; retrying next round")


class ReviewSettings(LayeredSettings):
    """The consent service's broker identity (`earmark-consent` in the broker ACL)."""

    model_config = ConfigDict(extra="forbid")
    env_prefix: ClassVar[str] = "EARMARK_REVIEW_"

    mqtt: MqttSettings = MqttSettings()
    client_id: str = "earmark-consent"


def _app_tls(args: argparse.Namespace) -> tuple[Path, Path] | None:
    """The certificate and key to serve with: given, or made at setup; None for plain HTTP."""
    if args.plain_http:
        return None
    if (args.cert is None) != (args.key is None):
        raise ConfigError("give both --cert and --key, or neither")
    if args.cert is not None:
        return Path(args.cert), Path(args.key)
    cert, key = tls.paths(args.data_dir)
    if not (cert.exists() and key.exists()):
        raise ConfigError(
            f"no certificate for the app in {cert.parent}: run `earmark review setup` for that data directory "
            "(or give --cert and --key, or --plain-http behind a proxy that does TLS)"
        )
    return cert, key


def _check_port_free(host: str, port: int) -> None:
    reason = lan.bind_error(host, port)
    if reason is not None:
        raise ConfigError(f"cannot listen on {host}:{port} ({reason}); choose another with --port")


def _proxy_address(value: str) -> str:
    """An IP address or network for --trusted-proxy, written the way uvicorn compares it."""
    try:
        return str(ipaddress.ip_network(value, strict=True)) if "/" in value else str(ipaddress.ip_address(value))
    except ValueError as err:
        # A name would be compared as a literal string and never match a peer address.
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/24)"
        ) from err


def _serve(args: argparse.Namespace, registry: Registry) -> int:
    import uvicorn

    from review_opt_out.app import create_app
    from review_opt_out.publisher import ConsentPublisher
    from review_opt_out.voice import VoiceCommands

    overrides: dict[str, object] = {}
    if args.broker:
        host, _, port = args.broker.rpartition(":")
        overrides["mqtt"] = {"host": host or "127.0.0.1", "port": port}
    settings = load_settings(ReviewSettings, args.config, **overrides)
    registry.signer  # noqa: B018 - fail now, with the fix in the message, if there is no signing key
    certificate = _app_tls(args)
    # HTTPS listens where phones are (every interface); plain HTTP only on loopback unless told.
    listen = args.host or ("127.0.0.1" if certificate is None else "0.0.0.0")  # noqa: S104 - phones on the LAN
    _check_port_free(listen, args.port)
    loopback_only = listen.startswith("127.") or listen in ("localhost", "::1")
    names = list(LOOPBACK_HOSTS) if loopback_only else lan.reachable_names(args.public_name)
    if certificate is not None:
        names = list(dict.fromkeys([*names, *tls.certificate_names(certificate[0])]))
    scheme = "http" if certificate is None else "https"
    # TLS is started per connection by the one-port protocol, which answers a plain
    # http:// request with where to go instead of closing on it.
    http: str | type[asyncio.Protocol] = "auto"
    if certificate is not None:
        try:
            http = https_port.protocol_class(https_port.server_context(*certificate), names, args.port)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(f"cannot serve HTTPS with {certificate[0]} and {certificate[1]}: {err}") from err
    urls = [f"{scheme}://{name}:{args.port}/" for name in names if name != "localhost"]
    publisher = ConsentPublisher(registry, settings.mqtt, settings.client_id)
    publisher.start()
    # Its own connection (same broker account): a second client with the publisher's id
    # would knock the first off the broker.
    voice = VoiceCommands(registry, settings.mqtt, f"{settings.client_id}-voice", publisher.notify)
    voice.start()
    # Invitation links name the first address others can open (not a loopback one).
    share = next((url for url in urls if not lan.is_loopback_url(url)), None)
    app = create_app(
        registry,
        on_consent_change=publisher.notify,
        secure_cookies=certificate is not None,
        allowed_hosts=names,
        share_url=share,
    )
    stop = threading.Event()
    tally = app.state.earmark.failures.flush_if_due
    worker = threading.Thread(
        target=_background, args=(registry, args.sample_fraction, args.sample_interval, stop, tally), daemon=True
    )
    worker.start()
    # PostgreSQL checkpoints by itself; SQLite's WAL is moved off the request path here.
    checkpointer = Checkpointer(args.data_dir).start() if args.database is None else None
    where = {"type": "review_serving", "url": urls[0], "urls": urls, "broker": settings.mqtt.address}
    print(json.dumps(where), flush=True)  # noqa: T201 - an operator needs to know where it serves
    try:
        uvicorn.run(
            app,
            host=listen,
            port=args.port,
            log_level="warning",
            http=http,
            # The sign-in limits count the client's address. uvicorn would otherwise believe
            # X-Forwarded-For from 127.0.0.1, so any local client could claim a new address
            # per guess; only a proxy the operator names may say who the client is.
            proxy_headers=bool(args.trusted_proxy),
            forwarded_allow_ips=args.trusted_proxy or [],
        )
    finally:
        stop.set()
        if checkpointer is not None:
            checkpointer.stop()
        voice.stop()
        publisher.stop()
    return 0


def _verify_proofs(files: list[Path], key_file: Path) -> int:
    """`audit verify --proof NEW [--proof OLDER ...]`: offline, with the public key alone."""
    public_key = audit_proof.load_key(key_file)
    newest, *earlier = (audit_proof.load_proof(path) for path in files)
    problems = audit_proof.verify_proof(newest, public_key, earlier)
    for path, older in zip(files[1:], earlier, strict=True):
        problems += [f"{path}: {problem}" for problem in audit_proof.verify_proof(older, public_key)]
    for problem in problems:
        print(f"earmark audit: {problem}", file=sys.stderr)  # noqa: T201
    if problems:
        return 1
    head = newest.head
    kept = sum(len(older.entries) for older in earlier)
    print(  # noqa: T201
        f"earmark audit: proof holds: {len(newest.entries)} entries of household {newest.household_id} "
        f"are in the log of {head.size} entries signed at {head.signed_at} by key {head.key_id}"
        + (f"; all {kept} entries of the earlier proofs are still there" if earlier else "")
    )
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "earmark review") -> int:
    """Entry point of `earmark review` (`prog`: the name it reports under)."""
    return entry(prog, lambda args: _main(args, prog), argv)


def _main(argv: list[str], prog: str) -> int:
    parser = OneLineParser(prog=prog, description=__doc__)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the cloud's data directory (default: DATA/cloud)",
    )
    add_database_arguments(parser, "postgresql://…")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="companion app + reviewer API + consent publisher")
    serve.add_argument("--host", help="listen address (default: every interface over HTTPS, loopback for HTTP)")
    serve.add_argument("--port", type=int, default=DEFAULT_APP_PORT, help=f"default {DEFAULT_APP_PORT}, every run")
    serve.add_argument("--cert", type=Path, help="a PEM certificate to serve with instead of setup's self-signed one")
    serve.add_argument("--key", type=Path, help="the PEM private key of --cert")
    serve.add_argument("--plain-http", action="store_true", help="no TLS (only behind a proxy that does it)")
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        type=_proxy_address,
        default=[],
        metavar="ADDR",
        help="a reverse proxy's IP address or network whose X-Forwarded-For names the client (repeatable);"
        " without it the header is ignored",
    )
    serve.add_argument(
        "--public-name", action="append", default=[], help="another name phones use for this machine (repeatable)"
    )
    serve.add_argument("--broker", help="HOST:PORT (or [mqtt] in --config, EARMARK_REVIEW_MQTT__*)")
    serve.add_argument("--config", type=Path, help="TOML with [mqtt] username, password, tls, ca_file")
    serve.add_argument("--sample-fraction", type=float, default=0.002, help="share of eligible clips reviewed")
    serve.add_argument("--sample-interval", type=float, default=60.0, help="seconds between sampling rounds")
    sub.add_parser("setup", help="create the consent signing key (once per cloud); prints the public key devices need")
    household = sub.add_parser("add-household", help="create a household (review consent off)")
    household.add_argument("household_id")
    household.add_argument("name")
    household.add_argument("--time-zone", default="UTC", help="IANA name, e.g. Asia/Seoul: its day for 'today'")
    member = sub.add_parser("add-member", help="a member who signs in to the app")
    member.add_argument("household_id")
    member.add_argument("email")
    member.add_argument("name")
    member.add_argument("--password-file", type=Path)
    check = sub.add_parser("check-password", help="is the password in a file a member's current one? (exit 0/1)")
    check.add_argument("household_id")
    check.add_argument("email")
    check.add_argument("--password-file", type=Path)
    reviewer = sub.add_parser("add-reviewer", help="a reviewer account")
    reviewer.add_argument("name")
    reviewer.add_argument("--role", choices=["reviewer", "admin"], default="reviewer")
    reviewer.add_argument("--password-file", type=Path)
    sample = sub.add_parser("sample", help="admit eligible clips to the review pool once")
    sample.add_argument("--fraction", type=float, default=0.002)
    sub.add_parser("retention", help="apply auto-delete settings once")
    # Its own name under `earmark audit`, not `earmark audit audit`.
    audit_prog = "earmark audit" if prog == "earmark audit" else None
    audit_cmd = sub.add_parser("audit", help="audit log tools", prog=audit_prog)
    audit_cmd.add_argument("action", choices=["verify"])
    audit_cmd.add_argument(
        "--proof",
        type=Path,
        action="append",
        help="check a household's downloaded proof offline instead of the database; "
        "give it again with an earlier proof to check that nothing of it was removed or changed",
    )
    audit_cmd.add_argument(
        "--public-key",
        type=Path,
        help="the consent key's public half (PEM) to check proofs with (default: the data directory's)",
    )
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir or paths.cloud_dir()
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)])
    os.umask(0o077)  # the database, keys and audio are private from the first byte
    try:
        if args.command == "setup":
            public, created = signing.create_key(args.data_dir)
            print(f"{'created' if created else 'kept the existing'} consent signing key; give devices {public}")  # noqa: T201
            cert, _key, made = tls.create_certificate(args.data_dir, lan.reachable_names())
            names = ", ".join(tls.certificate_names(cert))
            print(f"{'created' if made else 'kept the existing'} the app's self-signed certificate {cert} ({names})")  # noqa: T201
            return 0
        if args.command == "audit" and args.proof:
            return _verify_proofs(args.proof, args.public_key or signing.public_key_path(args.data_dir))
        args.database = check_url(database_url(args, prog))
        if args.command == "audit" and args.database is None and not database_path(args.data_dir).exists():
            # Opening the registry would create an empty database and call its empty chain intact.
            raise ConfigError(f"no Earmark database in {args.data_dir}: nothing to verify (is --data-dir right?)")
        registry = Registry(args.data_dir, database=args.database)
        if args.command == "serve":
            return _serve(args, registry)
        if args.command == "add-household":
            registry.create_household(args.household_id, args.name, time_zone=args.time_zone)
            print(f"added household {args.household_id} ({args.name}); review is off until a member turns it on")  # noqa: T201
        elif args.command == "add-member":
            password = _password(args.password_file)
            auth.add_member(registry, args.household_id, args.email, args.name, password)
            print(f"added {args.email} to {args.household_id} as an owner; they can sign in to the app now")  # noqa: T201
        elif args.command == "check-password":
            current = auth.is_current_password(registry, args.household_id, args.email, _password(args.password_file))
            print(f"that is {'' if current else 'not '}{args.email}'s current password")  # noqa: T201
            return 0 if current else 1
        elif args.command == "add-reviewer":
            password = _password(args.password_file)
            members.check_password(password)
            registry.add_reviewer(args.name, auth.hash_password(password), args.role)
            print(f"added {args.role} {args.name}; they sign in at /review")  # noqa: T201
        elif args.command == "sample":
            print(f"admitted {registry.sample(args.fraction)} clips to the review pool")  # noqa: T201
        elif args.command == "retention":
            print(f"deleted {apply_retention(registry)} recordings past their household's auto-delete")  # noqa: T201
        else:
            result = audit.verify(registry.db)
            if not result.ok:
                print(f"earmark audit: chain broken at entry {result.first_bad_seq}: {result.problem}", file=sys.stderr)  # noqa: T201
                return 1
            print(f"earmark audit: {result.entries} entries, chain intact")  # noqa: T201
        return 0
    except EarmarkError as err:
        return report(prog, err)


if __name__ == "__main__":
    raise SystemExit(main())
