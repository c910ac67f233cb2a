"""scan_batch: large batches are split without copying chunk bytes, and agree with protobuf."""

from __future__ import annotations

import os

import pytest
from google.protobuf.message import DecodeError

from node_comm_grpc.proto import node_comm_pb2 as pb
from node_comm_grpc.wire import chunk_header, item, scan_batch


def _batch(*parts: bytes) -> bytes:
    return b"".join(parts)


def test_chunks_come_back_as_views_and_other_frames_as_envelopes() -> None:
    payload = os.urandom(300_000)
    prefix, _ = chunk_header(transfer=300, size=len(payload))
    request = pb.Envelope(type=pb.REQUEST, id=9, method="m", transfer=300, total_size=len(payload))
    abort = pb.Envelope(type=pb.CHUNK, transfer=300, reason="aborted")
    data = _batch(*item(request.SerializeToString()), prefix, payload, *item(abort.SerializeToString()))

    frames = scan_batch(data)

    assert len(frames) == 3
    assert frames[0] == request
    transfer, view = frames[1]
    assert transfer == 300 and isinstance(view, memoryview) and view.tobytes() == payload
    assert frames[2] == abort  # a CHUNK frame with a reason is parsed by protobuf
    # Protobuf reads the same bytes the same way.
    whole = pb.Batch.FromString(data).frames
    assert [f.type for f in whole] == [pb.REQUEST, pb.CHUNK, pb.CHUNK]
    assert whole[1].transfer == 300 and whole[1].payload == payload


@pytest.mark.parametrize(
    "data",
    [
        b"\x12" + b"\x00" * 10,  # wrong field tag
        b"\x0a\xff\xff\xff",  # truncated varint
        b"\x0a\x10" + b"\x00" * 4,  # frame longer than the batch
        b"\x0a\x05\xff\xff\xff\xff\xff",  # a frame that is not an Envelope
        bytes(range(256)) * 4,
    ],
)
def test_garbage_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        scan_batch(data)


def test_a_large_inline_payload_is_split_off_its_envelope() -> None:
    # inline_payload_item writes the payload as the envelope's last field: scan_batch parses the
    # envelope without it and hands the payload as bytes; protobuf reads the same frame the same.
    from node_comm import Message, MessageType
    from node_comm_grpc.wire import INLINE_PAYLOAD_MIN, encode, inline_payload_item

    payload = os.urandom(INLINE_PAYLOAD_MIN + 5)
    msg = Message(7, MessageType.REQUEST, "a", "b", "m", b"", "raw", {"k": "v"}, None, 2.5)
    parts, size = inline_payload_item(encode(msg, b""), payload)
    small = pb.Envelope(type=pb.NOTIFY, id=8, method="n", payload=b"x")
    data = _batch(*parts, *item(small.SerializeToString()))
    assert len(b"".join(parts)) == size

    frames = scan_batch(data)

    env, got = frames[0]
    assert type(got) is bytes and got == payload
    assert env.id == 7 and env.method == "m" and env.metadata["k"] == "v" and env.deadline == 2.5 and not env.payload
    assert frames[1] == small
    whole = pb.Batch.FromString(data).frames[0]
    assert whole.payload == payload and whole.id == 7


def test_a_large_frame_whose_payload_is_not_last_is_parsed_whole() -> None:
    env = pb.Envelope(type=pb.REQUEST, id=3, payload=os.urandom(40_000), serializer="raw")  # field 5 after 4
    frames = scan_batch(b"".join(item(env.SerializeToString())) * 8)
    assert frames == [env] * 8
