"""`earmark`, one command: every subcommand's help, a bad input for each (one line, exit 2,
never a traceback), one data directory, and flags that work wherever they stand."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from earmark.cli import COMMANDS, split_globals
from tests.conftest import REPO


def earmark(*args: str, data: Path, stdin: str | None = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EARMARK_DATA_DIR": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "earmark", *args],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=120, env=env, input=stdin,
    )  # fmt: skip


def one_line_error(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_explains_itself(command: str, tmp_path: Path) -> None:
    done = earmark(command, "--help", data=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: earmark {command}")
    assert not list(tmp_path.iterdir())  # asking for help creates nothing


BAD_INPUT: dict[str, tuple[list[str], str]] = {
    "up": (["--input", "sample", "--vosk-model", "/no/such/model"], "/no/such/model"),
    "device": (["listen", "--input", "/no/such.wav"], "/no/such.wav"),
    "doctor": (["--config", "/no/such.toml"], "/no/such.toml: no such config file"),
    "speaker": (["--config", "/no/such.toml"], "/no/such.toml: no such config file"),
    "flash": (["image.img", "--config", "/no/such.toml"], "/no/such.toml: no such config file"),
    "provision": (["--devices", "/no/such.toml", "--out", "x"], "/no/such.toml"),
    "pipeline": (["enroll", "kitchen 1!", "h1"], "device id"),
    "review": (["add-member", "h1", "notanemail", "Ana", "--password-file", "/dev/null"], "not an email address"),
    "audit": (["verify"], "no Earmark database in"),
    "models": (["fetch"], "the following arguments are required: url"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_bad_input_in_one_line(command: str, tmp_path: Path) -> None:
    args, expected = BAD_INPUT[command]
    # The speaker service reports as JSON (its log is the journal), still one line.
    named = "" if command == "speaker" else f"earmark {command}"
    one_line_error(earmark(command, *args, data=tmp_path), named, expected)
    # An unknown flag, too (after a missing argument, argparse may name that first).
    one_line_error(earmark(command, "--no-such-flag", data=tmp_path), "earmark")


def test_the_top_level_refuses_in_one_line(tmp_path: Path) -> None:
    one_line_error(earmark("nope", data=tmp_path), "earmark: error: no command 'nope'")
    one_line_error(earmark(data=tmp_path), "earmark: error: give a command")
    assert "review" in earmark("--help", data=tmp_path).stdout


def test_admin_commands_name_the_problem_and_say_what_they_did(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("correct horse\n")
    data = tmp_path / "data"
    assert "created consent signing key" in earmark("review", "setup", data=data).stdout
    added = earmark("review", "add-household", "h1", "The Parks", data=data)
    assert added.stdout.startswith("added household h1 (The Parks)")
    one_line_error(
        earmark("review", "add-member", "h9", "ana@example.org", "Ana", "--password-file", str(password), data=data),
        "no household 'h9'",
    )
    one_line_error(
        earmark("review", "add-member", "h1", "ana@example.org", "Ana", "--password-file", "/no/pw", data=data),
        "--password-file /no/pw: No such file or directory",
    )
    one_line_error(earmark("review", "add-member", "h1", "ana@example.org", "Ana", data=data), "no password")
    password.write_text("short\n")
    one_line_error(
        earmark("review", "add-member", "h1", "ana@example.org", "Ana", "--password-file", str(password), data=data),
        "at least 10 characters",
    )
    password.write_text("correct horse\n")
    member = earmark(
        "review", "add-member", "h1", "ana@example.org", "Ana", "--password-file", str(password), data=data
    )
    assert member.stdout.startswith("added ana@example.org to h1 as an owner")
    # `earmark up` asks this before pointing a person to its password file.
    current = earmark("review", "check-password", "h1", "Ana@example.org", "--password-file", str(password), data=data)
    assert current.returncode == 0 and "that is Ana@example.org's current password" in current.stdout
    password.write_text("a changed one\n")
    stale = earmark("review", "check-password", "h1", "ana@example.org", "--password-file", str(password), data=data)
    assert stale.returncode == 1 and "not ana@example.org's current password" in stale.stdout
    password.write_text("correct horse\n")
    assert earmark("pipeline", "enroll", "kitchen-1", "h1", data=data).stdout.startswith("enrolled kitchen-1 in h1")
    # Moving a speaker to another household is deliberate, never a typo's side effect.
    one_line_error(earmark("pipeline", "enroll", "kitchen-1", "h2", data=data), "add --move")
    moved = earmark("pipeline", "enroll", "kitchen-1", "h2", "--move", data=data)
    assert "moved from h1" in moved.stdout


def test_one_data_directory_and_flags_anywhere(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert earmark("review", "setup", data=data).returncode == 0
    assert earmark("review", "add-household", "h1", "The Parks", data=data).returncode == 0
    # Everything lives under DATA/cloud, and `earmark audit` finds it with no flag at all ...
    assert (data / "cloud" / "keys" / "consent-signing.key").exists()
    verified = earmark("audit", "verify", data=data)
    assert verified.returncode == 0 and "chain intact" in verified.stdout and "0 entries" not in verified.stdout
    # ... or with --data-dir before or after the command.
    elsewhere = tmp_path / "unused"
    for line in (["--data-dir", str(data), "audit", "verify"], ["audit", "verify", "--data-dir", str(data)]):
        done = earmark(*line, data=elsewhere)
        assert done.returncode == 0 and "chain intact" in done.stdout, done.stderr
    assert not elsewhere.exists()
    # -v anywhere too, even for commands that are another program's subcommand.
    for line in (["-v", "audit", "verify"], ["audit", "verify", "-v"]):
        assert earmark(*line, data=data).returncode == 0
    assert "unrecognized" not in earmark("doctor", "-v", "--config", "/no/such.toml", data=data).stderr


def test_global_flags_are_taken_from_anywhere_but_after_a_double_dash() -> None:
    assert split_globals(["audit", "verify", "--data-dir", "/d", "-vv"]) == (Path("/d"), 2, ["audit", "verify"])
    assert split_globals(["--data-dir=/d", "up", "--", "--data-dir", "x"]) == (
        Path("/d"),
        0,
        ["up", "--", "--data-dir", "x"],
    )


@pytest.mark.parametrize("command", ["up", "pipeline", "review"])
def test_a_database_file_that_cannot_be_used_is_named_in_one_line(command: str, tmp_path: Path) -> None:
    tail = {"up": ["--input", "sample"], "pipeline": ["enroll", "d1", "h1"], "review": ["retention"]}[command]
    missing = earmark(command, "--database-file", str(tmp_path / "nowhere"), *tail, data=tmp_path / "data")
    one_line_error(missing, f"earmark {command}: error: --database-file {tmp_path / 'nowhere'}: No such file")
    (tmp_path / "empty").write_text("\n")
    empty = earmark(command, "--database-file", str(tmp_path / "empty"), *tail, data=tmp_path / "data")
    one_line_error(empty, f"--database-file {tmp_path / 'empty'}: its first line should be the database URL")


def test_the_database_url_comes_from_a_file_or_the_environment_and_a_typed_password_is_warned_about(
    tmp_path: Path,
) -> None:
    import psycopg

    from tests.postgres import fresh_database

    data = tmp_path / "data"
    with fresh_database() as url:
        password = url.split("@")[0].rsplit(":", 1)[1]
        (tmp_path / "url").write_text(f"{url}\nthe rest of the file is not read\n")
        from_file = earmark("pipeline", "--database-file", str(tmp_path / "url"), "enroll", "d1", "h1", data=data)
        assert from_file.returncode == 0 and from_file.stderr == "", from_file.stderr
        env = {**os.environ, "EARMARK_DATA_DIR": str(data), "EARMARK_DATABASE": url}
        from_env = subprocess.run(
            [sys.executable, "-m", "earmark", "pipeline", "enroll", "d2", "h1"],
            cwd=REPO, capture_output=True, text=True, check=False, timeout=120, env=env,
        )  # fmt: skip
        assert from_env.returncode == 0 and from_env.stderr == "", from_env.stderr
        typed = earmark("pipeline", "--database", url, "enroll", "d3", "h1", data=data)
        assert typed.returncode == 0  # still honoured ...
        [warning] = typed.stderr.splitlines()  # ... with one line that says what to use instead
        assert warning.startswith("earmark pipeline: warning: --database puts the database password")
        assert "$EARMARK_DATABASE" in warning and "--database-file" in warning and password not in warning
        both = earmark("review", "--database", url, "--database-file", str(tmp_path / "url"), "retention", data=data)
        one_line_error(both, "not allowed with argument")
        with psycopg.connect(url) as db:
            rows = db.execute("SELECT device_id FROM devices ORDER BY device_id").fetchall()
    assert rows == [("d1",), ("d2",), ("d3",)]
    assert not list(data.rglob("*.sqlite3"))  # every run used PostgreSQL


def test_up_checks_what_a_person_can_get_wrong_before_starting_anything(tmp_path: Path) -> None:
    missing = earmark("up", "--input", str(tmp_path / "nosuch.wav"), data=tmp_path / "a")
    one_line_error(missing, "earmark up: error:", "nosuch.wav: no such audio file")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - where the app would listen
        taken.listen()
        port = taken.getsockname()[1]
        busy = earmark("up", "--input", "sample", "--app-port", str(port), data=tmp_path / "b")
    one_line_error(busy, f"cannot listen on port {port}", "choose another with --app-port")
    # Nothing was started: no broker, no cloud, no data directory.
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
