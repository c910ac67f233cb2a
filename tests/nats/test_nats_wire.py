"""The frame format and subject tokens: round trips, and hostile bytes refused with BadFrame."""

from __future__ import annotations

import pytest

from node_comm_nats.wire import BadFrame, decode, encode, token, untoken


@pytest.mark.parametrize("node_id", ["a", "worker_7-b", "w.1", "sp ace", "*", ">", "~x", "参与方"])
def test_tokens_are_legal_subject_tokens_and_round_trip(node_id: str) -> None:
    tok = token(node_id)
    assert tok and not any(c in tok for c in ".*> \t")
    assert untoken(tok) == node_id


def test_distinct_ids_never_share_a_token() -> None:
    ids = ["a.b", "a_b", "~612e62", "A.B"]
    assert len({token(i) for i in ids}) == len(ids)


def test_frame_round_trip() -> None:
    data = encode(1, id=42, method="train", serializer="json", deadline=2.5, extra={"md": {"k": "v"}}, payload=b"{}")
    f = decode(data)
    assert (f.kind, f.id, f.method, f.serializer, f.deadline, f.extra, f.payload) == (
        1,
        42,
        "train",
        "json",
        2.5,
        {"md": {"k": "v"}},
        b"{}",
    )
    assert decode(encode(6)).deadline is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        encode(1)[:-1] + b"\x00" * 0,  # fine (no payload); below: lies about lengths
        encode(1, method="m")[:3] + b"\xff\xff" + encode(1, method="m")[5:],
        encode(1, extra={"a": 1})[:-3],
        encode(1, deadline=float("inf")),
        encode(1)[:0] + b"\x02" + encode(1)[1:],
    ],
)
def test_hostile_bytes_are_refused_or_harmless(data: bytes) -> None:
    try:
        frame = decode(data)
    except BadFrame:
        return
    assert frame.kind == 1 and frame.payload == b""
