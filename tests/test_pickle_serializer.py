"""``pickle`` with protocol-5 out-of-band buffers: arrays are copied once to send and rebuilt over
the received buffer; writability is kept as the sender had it; plain pickles still decode."""

from __future__ import annotations

import pickle
import tracemalloc
from typing import Any

import pytest

from node_comm import CallContext, MethodOptions, Node, SerializationError
from node_comm_serializers import PickleSerializer
from node_comm_serializers.pickle_serializer import OUT_OF_BAND_MIN

from .conftest import make_config

np = pytest.importorskip("numpy")

SER = PickleSerializer()


def weights() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "w": rng.random((128, 64), dtype=np.float32),
        "fortran": np.asfortranarray(rng.random((64, 32))),
        "strided": np.arange(8192, dtype=np.int16)[::2],  # not contiguous: pickled in-band
        "big-endian": np.arange(2048, dtype=">i4"),
        "small": np.arange(4),
        "blob": bytearray(b"\x01" * 10_000),
        "meta": {"round": 3, "names": ("a", "b")},
    }


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        if isinstance(v, np.ndarray):
            assert b[k].dtype == v.dtype and b[k].shape == v.shape and np.array_equal(b[k], v), k
        else:
            assert type(b[k]) is type(v) and b[k] == v, k


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview"])
def test_arrays_round_trip_writable(kind: str) -> None:
    obj = weights()
    data = SER.serialize(obj)
    assert isinstance(data, bytes)
    buf: Any = {"bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(bytearray(data))}[kind]
    back = SER.deserialize(buf)
    assert_same(obj, back)
    assert back["fortran"].flags.f_contiguous
    for k in ("w", "fortran", "strided", "big-endian", "small"):
        assert back[k].flags.writeable, k  # as after any pickle.loads
        back[k][0] = 0


def test_writable_buffer_is_decoded_without_copy() -> None:
    obj = {f"w{i}": np.full((256, 256), i, np.float32) for i in range(4)}
    buf = bytearray(SER.serialize(obj))
    whole = np.frombuffer(buf, np.uint8)
    tracemalloc.start()
    try:
        back = SER.deserialize(buf)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024  # no copy of the 1 MiB of arrays
    for k, v in obj.items():
        assert np.shares_memory(back[k], whole) and back[k].flags.aligned
        assert np.array_equal(back[k], v)
    # Over a read-only payload each array gets its own writable copy (pickle always gave writable arrays).
    copied = SER.deserialize(bytes(buf))
    assert copied["w1"].flags.writeable and not np.shares_memory(copied["w1"], whole)


def test_read_only_arrays_stay_read_only_and_are_never_copied() -> None:
    ro = np.arange(4096, dtype=np.float64)
    ro.flags.writeable = False
    buf = bytearray(SER.serialize({"ro": ro}))
    back = SER.deserialize(buf)["ro"]
    assert not back.flags.writeable and np.shares_memory(back, np.frombuffer(buf, np.uint8))


def test_sending_copies_each_array_once_and_beats_in_band_pickling() -> None:
    arr = np.ones(8 << 20, np.uint8)

    def peak_of(fn: Any) -> int:
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    out_of_band = peak_of(lambda: SER.serialize({"w": arr}))
    in_band = peak_of(lambda: pickle.dumps({"w": arr}, protocol=4))
    assert out_of_band < 1.1 * arr.nbytes  # the payload itself and nothing else
    assert in_band > 1.5 * arr.nbytes  # what it replaces: a copy of the array, then the stream


def test_small_objects_are_plain_pickles_and_plain_pickles_decode() -> None:
    small = {"a": [1, 2], "arr": np.arange(OUT_OF_BAND_MIN // 8 - 1)}
    assert SER.serialize(small) == pickle.dumps(small, protocol=5)
    big = weights()
    for protocol in (2, 4, 5):  # what older peers send: arrays in-band
        data = pickle.dumps(big, protocol=protocol)
        assert_same(pickle.loads(data), SER.deserialize(data))


@pytest.mark.parametrize(
    "cut", [0, 3, 10, 20, -1, -100], ids=["empty", "magic-only", "short-header", "header", "last-byte", "buffer"]
)
def test_truncated_frames_are_refused(cut: int) -> None:
    data = SER.serialize({"w": np.ones(4096)})
    with pytest.raises((SerializationError, pickle.UnpicklingError, EOFError, ValueError)):
        SER.deserialize(data[:cut])


def test_frame_announcing_more_than_it_holds_is_a_serialization_error() -> None:
    data = bytearray(SER.serialize({"w": np.ones(4096)}))
    data[4:8] = (10**9).to_bytes(4, "little")  # a billion buffers
    with pytest.raises(SerializationError, match="buffers"):
        SER.deserialize(data)
    data = bytearray(SER.serialize({"w": np.ones(4096)}))
    data[16:24] = (1 << 60).to_bytes(8, "little")  # one huge buffer
    with pytest.raises(SerializationError, match="past the frame"):
        SER.deserialize(data)
    data = SER.serialize({"w": np.ones(4096)}) + b"trailing"
    with pytest.raises(SerializationError, match="end at byte"):
        SER.deserialize(data)


async def test_handler_gets_writable_arrays_and_never_the_callers() -> None:
    a, b = Node("a", make_config("memory", "a")), Node("b", make_config("memory", "b"))

    async def scale(payload: Any, ctx: CallContext) -> Any:
        payload["w"] *= 2
        return payload

    b.register("scale", scale, MethodOptions(serializer="pickle"))
    async with a, b:
        await a.connect("b")
        mine = {"w": np.ones((64, 64), np.float32)}
        back = await a.call("b", "scale", mine, serializer="pickle")
    assert np.array_equal(back["w"], np.full((64, 64), 2, np.float32))
    assert np.array_equal(mine["w"], np.ones((64, 64), np.float32))


def test_serialize_parts_is_the_payload_without_the_copy() -> None:
    obj = weights()
    parts = SER.serialize_parts(obj)
    assert b"".join(parts) == SER.serialize(obj)
    assert any(np.shares_memory(np.frombuffer(p, np.uint8), obj["w"]) for p in parts if len(p))
    assert SER.serialize_parts({"a": 1}) == [pickle.dumps({"a": 1}, protocol=5)]
