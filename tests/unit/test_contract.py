"""The wire contract: topics, message models, the binary chunk format, reassembly."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import topics
from contract.errors import ContractError
from contract.messages import AudioChunk, AudioFormat, UtteranceEnd, UtteranceStart, decode_json, encode_json
from pipeline.reassembly import Reassembler


def start_fields() -> dict[str, object]:
    return {
        "device_id": "kitchen-1",
        "household_id": "h-42",
        "utterance_id": str(uuid.uuid4()),
        "capture_started_at": datetime.now(UTC).isoformat(),
        "audio_format": AudioFormat().model_dump(),
        "wake_word": "alexa",
        "wake_score": 0.97,
        "firmware_version": "0.1.0",
        "review_allowed": True,
        "consent_version": 3,
    }


def test_topics_round_trip() -> None:
    utterance_id = uuid.uuid4()
    topic = topics.utterance("kitchen-1", utterance_id, topics.UtterancePart.AUDIO, "worker-2")
    assert topic == f"earmark/v1/devices/kitchen-1/utterances/{utterance_id}/audio/worker-2"
    parsed = topics.parse_utterance_topic(topic)
    assert (parsed.device_id, parsed.utterance_id, parsed.part, parsed.worker_id) == (
        "kitchen-1",
        utterance_id,
        topics.UtterancePart.AUDIO,
        "worker-2",
    )
    start = topics.utterance("kitchen-1", utterance_id, topics.UtterancePart.START)
    assert topics.parse_utterance_topic(start).worker_id is None
    with pytest.raises(ContractError):  # audio goes to the worker that claimed the utterance
        topics.utterance("kitchen-1", utterance_id, topics.UtterancePart.AUDIO)
    assert topics.consent("h-42") == "earmark/v1/households/h-42/consent"


@pytest.mark.parametrize(
    "topic",
    [
        "earmark/v1/devices/kitchen-1/utterances/not-a-uuid/audio",
        f"earmark/v1/devices/kitchen-1/utterances/{uuid.uuid4()}/video",
        f"earmark/v2/devices/kitchen-1/utterances/{uuid.uuid4()}/audio",
        f"earmark/v1/devices/../utterances/{uuid.uuid4()}/audio",
        "earmark/v1/devices/kitchen-1/status",
        f"earmark/v1/devices/kitchen-1/utterances/{uuid.uuid4()}/audio",  # to no worker
        f"earmark/v1/devices/kitchen-1/utterances/{uuid.uuid4()}/start/worker-2",  # a start is for any
        f"earmark/v1/devices/kitchen-1/utterances/{uuid.uuid4()}/end/../x",
    ],
)
def test_bad_topics_are_rejected(topic: str) -> None:
    with pytest.raises(ContractError) as caught:
        topics.parse_utterance_topic(topic)
    assert caught.value.code in {"bad_topic", "bad_id"}


@pytest.mark.parametrize("missing", ["review_allowed", "consent_version"])
def test_a_start_without_its_consent_tag_cannot_be_built(missing: str) -> None:
    fields = start_fields()
    del fields[missing]
    with pytest.raises(ContractError) as caught:
        decode_json(UtteranceStart, encode_fields(fields))
    assert caught.value.code == "schema_violation" and missing in caught.value.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("review_allowed", "maybe"),
        ("review_allowed", "true"),
        ("review_allowed", "yes"),
        ("review_allowed", 1),
        ("review_allowed", 1.0),
        ("review_allowed", None),
        ("consent_version", "2"),
        ("consent_version", 2.0),
        ("consent_version", True),
        ("consent_version", -1),
        ("consent_version", 2**31),
    ],
)
def test_a_tag_is_json_true_false_and_an_integer_nothing_coerced(field: str, value: object) -> None:
    with pytest.raises(ContractError) as caught:
        decode_json(UtteranceStart, encode_fields({**start_fields(), field: value}))
    assert caught.value.code == "schema_violation" and field in caught.value.message


def test_an_end_cannot_claim_more_chunks_than_the_wire_allows() -> None:
    end = {"type": "utterance_end", "utterance_id": str(uuid.uuid4()), "reason": "silence", "chunk_count": 2**32}
    with pytest.raises(ContractError) as caught:
        decode_json(UtteranceEnd, encode_fields(end))
    assert caught.value.code == "schema_violation" and "chunk_count" in caught.value.message


def test_errors_never_echo_the_payload() -> None:
    spoken = "turn on the lights in the bedroom"
    with pytest.raises(ContractError) as caught:
        decode_json(UtteranceStart, f'{{"wake_word": "{spoken}", '.encode())
    assert caught.value.code == "malformed_json" and spoken not in str(caught.value)


def encode_fields(fields: dict[str, object]) -> bytes:
    import json

    return json.dumps(fields).encode()


def test_start_round_trips() -> None:
    start = decode_json(UtteranceStart, encode_fields(start_fields()))
    assert decode_json(UtteranceStart, encode_json(start)) == start


@given(st.integers(0, 2**32 - 1), st.integers(0, 255), st.binary(max_size=6400).map(lambda b: b[: len(b) // 2 * 2]))
def test_chunks_round_trip(sequence: int, flags: int, pcm: bytes) -> None:
    chunk = AudioChunk(sequence=sequence, flags=flags, pcm=pcm)
    assert AudioChunk.decode(chunk.encode()) == chunk


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x01\x00", "bad_chunk"),
        (b"\x02" + bytes(7), "bad_chunk"),
        (b"\x01" + bytes(7) + b"\x00", "bad_chunk"),
        (b"\x01" + bytes(7) + bytes(20_000), "payload_too_large"),
    ],
    ids=["short", "version", "odd-bytes", "too-large"],
)
def test_bad_chunks_are_rejected(payload: bytes, code: str) -> None:
    with pytest.raises(ContractError) as caught:
        AudioChunk.decode(payload)
    assert caught.value.code == code


def chunk(sequence: int) -> AudioChunk:
    return AudioChunk(sequence=sequence, pcm=bytes([sequence % 256]) * 4)


def test_reassembly_handles_duplicates_reordering_and_gaps() -> None:
    reassembler = Reassembler()
    out: list[bytes] = []
    for sequence in [0, 2, 1, 1, 0, 4, 5]:
        out += reassembler.add(chunk(sequence))
    assert out == [chunk(i).pcm for i in (0, 1, 2)]
    assert reassembler.duplicates == 2 and reassembler.waiting
    out += reassembler.skip_gaps(expected_chunks=7)
    assert out[3:] == [chunk(4).pcm, chunk(5).pcm]
    assert reassembler.missing == 2  # 3 and 6


def test_a_chunk_beyond_the_window_is_refused_and_gaps_are_counted_not_walked() -> None:
    reassembler = Reassembler(window_chunks=8)
    reassembler.add(chunk(0))
    with pytest.raises(ContractError) as caught:
        reassembler.add(chunk(2**31))
    assert caught.value.code == "sequence_out_of_window" and not reassembler.waiting
    reassembler.add(chunk(7))
    assert reassembler.skip_gaps(expected_chunks=2**16) == [chunk(7).pcm]
    assert reassembler.missing == 2**16 - 2 and reassembler.next_sequence == 2**16


@given(st.permutations(list(range(30))), st.lists(st.integers(0, 29), max_size=10))
def test_any_order_with_duplicates_gives_the_original(order: list[int], dups: list[int]) -> None:
    reassembler = Reassembler()
    sequence = list(order) + dups
    random.Random(len(dups)).shuffle(sequence)  # noqa: S311 - test data
    out: list[bytes] = []
    for s in sequence:
        out += reassembler.add(chunk(s))
    assert out == [chunk(i).pcm for i in range(30)] and not reassembler.waiting


def test_consent_public_keys_parse_from_the_pem_the_cloud_writes_and_nothing_else(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from contract.consent_signature import key_id, load_public_key, parse_public_key, public_key_pem

    ed = Ed25519PrivateKey.generate().public_key()
    pem = ed.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    parsed = parse_public_key(pem, "cloud.pub")
    assert bytes(parsed) == ed.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert public_key_pem(bytes(parsed)) == pem  # the same bytes both ways
    assert len(key_id(parsed)) == 16
    ec_pem = (
        generate_private_key(SECP256R1()).public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    for bad, message in (
        (ec_pem.decode(), "not an Ed25519 public key"),
        ("hello", "not a PEM public key"),
        ("-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
    ):
        with pytest.raises(ContractError, match=message):
            parse_public_key(bad, "x.pub")
    binary = tmp_path / "key.der"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ContractError, match="not a readable PEM public key"):
        load_public_key(binary)
