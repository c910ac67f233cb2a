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
