"""Settings: TOML file, EARMARK_* environment, flags; invalid values fail in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.errors import ConfigError, ModelLoadError
from firmware.preroll import PreRoll
from firmware.settings import load_settings
from firmware.wake import WakeSettings, WakeWordSpec, resolve_models


def test_toml_env_and_flags_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "earmark.toml"
    config.write_text(
        """
        input = "sample"
        [frontend.segmenter]
        silence_seconds = 0.9
        max_utterance_seconds = 12.0
        [[wake.words]]
        model = "hey_jarvis"
        threshold = 0.6
        """
    )
    monkeypatch.setenv("EARMARK_FRONTEND__SEGMENTER__SILENCE_SECONDS", "0.8")
    settings = load_settings(config, input="other.wav")
    assert settings.input == "other.wav"  # flag beats file
    assert settings.frontend.segmenter.silence_seconds == 0.8  # environment beats file
    assert settings.frontend.segmenter.max_utterance_seconds == 12.0  # file beats default
    assert settings.wake.words == (WakeWordSpec(model="hey_jarvis", threshold=0.6),)
    assert settings.save_dir is None  # nothing is kept unless asked


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"frontend": {"segmenter": {"silence_seconds": -1}}}, "frontend.segmenter.silence_seconds"),
        ({"frontend": {"vad": {"frame_ms": 30}}}, "frontend.vad.frame_ms"),
        ({"wake": {"words": []}}, "at least one wake word"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_settings_name_the_field(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, **overrides)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "nope.toml")


def test_a_users_own_model_path_and_model_dir(tmp_path: Path) -> None:
    bundled = resolve_models(WakeSettings())
    own = tmp_path / "kitchen_helper.tflite"
    own.write_bytes(bundled.wake_paths[0].read_bytes())
    resolved = resolve_models(WakeSettings(words=(WakeWordSpec(model=str(own)),)))
    assert resolved.wake_paths == (own,) and resolved.framework == "tflite"
    with pytest.raises(ModelLoadError, match="feature model"):
        resolve_models(WakeSettings(words=(WakeWordSpec(model=str(own)),), model_dir=tmp_path))
    with pytest.raises(ConfigError, match=r"all be \.tflite or all be \.onnx"):
        onnx = tmp_path / "other.onnx"
        onnx.write_bytes(b"")
        resolve_models(WakeSettings(words=(WakeWordSpec(model=str(own)), WakeWordSpec(model=str(onnx)))))


def test_preroll_keeps_the_newest_audio() -> None:
    preroll = PreRoll(0.16)  # two 80 ms frames
    for value in range(5):
        preroll.push(bytes([value]) * 2560)
    assert preroll.take() == bytes([3]) * 2560 + bytes([4]) * 2560
    assert preroll.take() == b""


def test_environment_json_for_structured_fields_and_other_programs_variables_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EARMARK_WAKE__WORDS", '[{"model": "hey_jarvis", "threshold": 0.7}]')
    monkeypatch.setenv("earmark_mqtt__port", "1884")  # names are case-insensitive
    monkeypatch.setenv("EARMARK_IDENTITY", '{"device_id": "kitchen-1", "household_id": "h-1"}')
    monkeypatch.setenv("EARMARK_PIPELINE_DATA_DIR", "/srv/earmark")  # the pipeline's, not ours
    monkeypatch.setenv("EARMARK_MQTT__NO_SUCH_FIELD", "x")  # names no field
    settings = load_settings(None)
    assert settings.wake.words == (WakeWordSpec(model="hey_jarvis", threshold=0.7),)
    assert settings.mqtt.port == 1884
    assert settings.identity is not None and settings.identity.household_id == "h-1"


def test_bad_environment_json_and_bad_toml_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EARMARK_WAKE__WORDS", "[not json")
    with pytest.raises(ConfigError, match="EARMARK_WAKE__WORDS: expected JSON"):
        load_settings(None)
    monkeypatch.delenv("EARMARK_WAKE__WORDS")
    bad = tmp_path / "bad.toml"
    bad.write_text("input = \n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_settings(bad)


def test_a_state_file_is_written_whole_private_and_owned_by_its_directorys_owner(tmp_path: Path) -> None:
    import os
    import stat

    from firmware.state_file import write_atomically

    state = tmp_path / "state"
    state.mkdir()
    if os.geteuid() == 0:
        os.chown(state, 65534, 65534)  # the service's directory; the household runs `sudo earmark device …`
    write_atomically(state / "satellite.json", '{"paused": true}')
    written = (state / "satellite.json").stat()
    assert stat.S_IMODE(written.st_mode) == 0o600 and (state / "satellite.json").read_text() == '{"paused": true}'
    assert written.st_uid == state.stat().st_uid, "the service must still read what a root CLI wrote"
    assert [p.name for p in state.iterdir()] == ["satellite.json"], "no temporary file is left behind"
