"""The ``numpy`` serializer: trees of arrays with no user packing, decoded over the received buffer,
and safe to accept from anyone (every hostile header is a SerializationError)."""

from __future__ import annotations

import os
import struct
import sys
import tracemalloc
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node_comm import CallContext, MethodOptions, Node, SerializationError
from node_comm_serializers import NumpySerializer

from .conftest import make_config

np = pytest.importorskip("numpy")

SER = NumpySerializer()
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("FUZZ_EXAMPLES") is None,
    suppress_health_check=[HealthCheck.too_slow],
)


def roundtrip(obj: Any, *, writable_buffer: bool = False) -> Any:
    data = SER.serialize(obj)
    assert isinstance(data, bytes)
    return SER.deserialize(bytearray(data) if writable_buffer else data)


def same_array(a: Any, b: Any) -> None:
    assert type(b) is type(a)
    assert b.dtype == a.dtype and b.shape == a.shape
    assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


DTYPES = [
    "bool",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
    ">f8",
    ">i2",
    "<U5",
    "S3",
    "datetime64[ns]",
    "timedelta64[s]",
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("writable_buffer", [False, True], ids=["bytes", "bytearray"])
def test_dtypes_round_trip(dtype: str, writable_buffer: bool) -> None:
    arr = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    back = roundtrip({"a": arr}, writable_buffer=writable_buffer)["a"]
    same_array(arr, back)
    assert back.flags.writeable  # always, over bytes too (after one copy)
    back[0, 0, 0] = arr[1, 2, 3]  # and really writable


def test_bfloat16_round_trips_when_ml_dtypes_is_installed() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    arr = np.array([1.5, -2.0, 3.25, 0.0], dtype=ml_dtypes.bfloat16)
    back = roundtrip([arr], writable_buffer=True)[0]
    assert back.dtype == arr.dtype and back.tobytes() == arr.tobytes()


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.array(3.5, dtype=np.float32),  # 0-d
        lambda: np.zeros(0, dtype=np.int8),
        lambda: np.zeros((0, 5, 0)),
        lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        lambda: np.arange(60, dtype=np.int32).reshape(6, 10)[::2, 1::3],  # strided
        lambda: np.arange(10, dtype=np.float64)[::-1],  # negative stride
        lambda: np.arange(6, dtype=">u4").reshape(2, 3).T,  # big-endian, Fortran order
        lambda: np.broadcast_to(np.arange(3), (4, 3)),  # zero stride, read-only
    ],
    ids=["0-d", "empty", "empty-3d", "fortran", "strided", "reversed", "big-endian-fortran", "broadcast"],
)
def test_layouts_round_trip(make: Any) -> None:
    arr = make()
    for writable_buffer in (False, True):
        back = roundtrip(arr, writable_buffer=writable_buffer)
        same_array(arr, back)
        assert back.flags.writeable
    if arr.flags.f_contiguous and not arr.flags.c_contiguous:
        assert back.flags.f_contiguous  # Fortran order kept, without a copy on either side


def test_tree_of_arrays_and_scalars_keeps_types() -> None:
    obj = {
        "layer1": {"w": np.ones((4, 3), np.float32), "b": np.zeros(3, np.float32)},
        "list": [np.arange(3), 1, 2.5, "s", None, True, b"\x00\xff"],
        "tuple": (np.int64(7), (np.float32(0.5),), []),
        "meta": {"round": 3, "lr": 1e-3, "names": ["a", "b"]},
        7: "int key",
        (1, "k"): "tuple key",
    }
    back = roundtrip(obj)
    assert set(back) == set(obj)
    same_array(obj["layer1"]["w"], back["layer1"]["w"])
    assert back["list"][1:] == [1, 2.5, "s", None, True, b"\x00\xff"]
    assert type(back["tuple"]) is tuple and type(back["tuple"][1]) is tuple and back["tuple"][2] == []
    assert type(back["tuple"][0]) is np.int64 and back["tuple"][0] == 7
    assert type(back["tuple"][1][0]) is np.float32
    assert back["meta"] == obj["meta"] and back[7] == "int key" and back[(1, "k")] == "tuple key"


def test_decoding_a_writable_buffer_makes_no_copy() -> None:
    arrays = {f"w{i}": np.random.default_rng(i).random((256, 256), dtype=np.float32) for i in range(4)}
    buf = bytearray(SER.serialize(arrays))
    whole = np.frombuffer(buf, np.uint8)
    tracemalloc.start()
    try:
        back = SER.deserialize(buf)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024  # views and a small header: no copy of the 1 MiB of arrays
    for k, arr in arrays.items():
        assert np.shares_memory(back[k], whole)
        assert back[k].flags.writeable and back[k].flags.aligned
        same_array(arr, back[k])
    # A read-only buffer gives writable arrays too, over one private copy.
    ro = SER.deserialize(bytes(buf))["w0"]
    assert ro.flags.writeable and not np.shares_memory(ro, whole)


def test_encoding_copies_each_array_once() -> None:
    arr = np.ones(4 << 20, np.uint8)
    tracemalloc.start()
    try:
        data = SER.serialize({"w": arr})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) < arr.nbytes + 256
    assert peak < 1.1 * arr.nbytes  # the payload itself, no intermediate copy


@pytest.mark.parametrize(
    "bad",
    [
        np.array([object(), 1], dtype=object),
        np.zeros(2, dtype=[("a", "f4"), ("b", "O")]),
        np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]),
        np.zeros(2, dtype="V8"),
        np.ma.masked_array([1, 2], mask=[True, False]),
        {"x": object()},
        {1, 2},
        2**70,
    ],
    ids=["object-array", "record-with-object", "record", "void", "masked", "object", "set", "big-int"],
)
def test_encode_refuses_what_it_cannot_carry_safely(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError, OverflowError)):
        SER.serialize(bad)


async def test_call_end_to_end_in_memory_and_unencodable_is_a_serialization_error() -> None:
    a, b = Node("a", make_config("memory", "a")), Node("b", make_config("memory", "b"))

    async def scale(payload: Any, ctx: CallContext) -> Any:
        payload["w"] *= 2  # writable, in place
        return payload

    b.register("scale", scale, MethodOptions(serializer="numpy"))
    async with a, b:
        await a.connect("b")
        mine = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": 1}
        back = await a.call("b", "scale", mine, serializer="numpy")
        assert np.array_equal(back["w"], np.arange(6, dtype=np.float32).reshape(2, 3) * 2)
        assert np.array_equal(mine["w"], np.arange(6, dtype=np.float32).reshape(2, 3))  # a copy went
        with pytest.raises(SerializationError, match="object"):
            await a.call("b", "scale", {"w": np.array([None], dtype=object)}, serializer="numpy")


def test_without_numpy_the_error_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy now raises ImportError
    for use in (lambda: SER.serialize({"a": 1}), lambda: SER.deserialize(b"NCND")):
        with pytest.raises(SerializationError, match=r"pip install 'node-comm-serializers\[numpy\]'"):
            use()


def test_torch_cpu_tensors_round_trip() -> None:
    torch = pytest.importorskip("torch")
    obj = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "h": torch.ones(3, dtype=torch.bfloat16)}
    back = roundtrip(obj, writable_buffer=True)
    assert isinstance(back["w"], torch.Tensor) and torch.equal(back["w"], obj["w"])
    assert back["h"].dtype == torch.bfloat16 and torch.equal(back["h"], obj["h"])


# --------------------------------------------------------------------------- hostile payloads

PREFIX = struct.Struct("<4sB3xI")


def frame(tree: Any, data: bytes = b"", *, version: int = 1, hlen: int | None = None) -> bytes:
    header = msgpack.packb(tree, use_bin_type=True)
    head = PREFIX.pack(b"NCND", version, len(header) if hlen is None else hlen) + header
    return head + bytes(-len(head) % 64) + data


def arr_ext(dtype: Any, shape: Any, offset: Any = 0, flags: Any = 0, code: int = 1) -> msgpack.ExtType:
    return msgpack.ExtType(code, msgpack.packb([dtype, shape, offset, flags]))


HOSTILE = {
    "empty": b"",
    "bad-magic": b"NCNX" + bytes(60),
    "a-pickle": b"\x80\x05K\x01.",
    "version": frame(1, version=9),
    "header-past-end": frame(1, hlen=1 << 30),
    "header-garbage": PREFIX.pack(b"NCND", 1, 4) + b"\xc1\xc1\xc1\xc1",
    "header-trailing": PREFIX.pack(b"NCND", 1, 2) + b"\x01\x02",
    "past-the-end": frame(arr_ext("<f8", [10]), bytes(64)),
    "huge-shape": frame(arr_ext("<f8", [1 << 40, 1 << 40]), bytes(64)),
    "dim-too-big": frame(arr_ext("|u1", [0, 1 << 63]), bytes(64)),
    "negative-dim": frame(arr_ext("|u1", [-1]), bytes(64)),
    "negative-offset": frame(arr_ext("|u1", [8], -64), bytes(64)),
    "float-dim": frame(arr_ext("|u1", [1.5]), bytes(64)),
    "too-many-dims": frame(arr_ext("|u1", [1] * 70), bytes(64)),
    "shape-not-list": frame(arr_ext("|u1", 8), bytes(64)),
    "object-dtype": frame(arr_ext("|O", [1]), bytes(64)),
    "object-dtype-2": frame(arr_ext("O", [1]), bytes(64)),
    "record-dtype": frame(arr_ext("f4,O", [1]), bytes(64)),
    "subarray-dtype": frame(arr_ext("(2,)f4", [1]), bytes(64)),
    "void-dtype": frame(arr_ext("|V8", [1]), bytes(64)),
    "zero-size-dtype": frame(arr_ext("S0", [1 << 40]), bytes(64)),
    "dtype-not-str": frame(arr_ext(5, [1]), bytes(64)),
    "dtype-python-name": frame(arr_ext("object", [1]), bytes(64)),
    "bad-flags": frame(arr_ext("|u1", [1], 0, 99), bytes(64)),
    "scalar-with-shape": frame(arr_ext("|u1", [2], 0, 0, code=3), bytes(64)),
    "descriptor-short": frame(msgpack.ExtType(1, msgpack.packb(["<f4", [1]])), bytes(64)),
    "descriptor-garbage": frame(msgpack.ExtType(1, b"\xc1"), bytes(64)),
    "unknown-ext": frame(msgpack.ExtType(42, b""), bytes(64)),
    "deep-lists": PREFIX.pack(b"NCND", 1, 100_000) + b"\x91" * 100_000,
    "unhashable-key": frame({(1,): 2}),  # a list as a map key
}


def nested_tuples(depth: int) -> bytes:
    inner = msgpack.packb(1)
    for _ in range(depth):
        inner = msgpack.packb(msgpack.ExtType(2, inner))
    return frame(msgpack.ExtType(2, inner))


@pytest.mark.parametrize("name", [*HOSTILE, "deep-tuples"])
def test_hostile_payloads_are_serialization_errors(name: str) -> None:
    data = nested_tuples(500) if name == "deep-tuples" else HOSTILE[name]
    for buf in (data, bytearray(data), memoryview(data)):
        with pytest.raises(SerializationError):
            SER.deserialize(buf)  # type: ignore[arg-type]


def test_odd_buffers_are_serialization_errors() -> None:
    good = SER.serialize({"w": np.ones(4)})
    for odd in (memoryview(good * 2)[::2], memoryview(np.zeros((len(good), 2), np.uint8)[:, 0])):
        with pytest.raises(SerializationError):
            SER.deserialize(odd)  # type: ignore[arg-type]
    assert np.array_equal(SER.deserialize(memoryview(bytearray(good)))["w"], np.ones(4))


def test_hostile_shape_is_refused_without_allocating() -> None:
    data = frame(arr_ext("<f8", [1 << 30]), bytes(64))  # 8 GiB announced, 64 bytes present
    tracemalloc.start()
    try:
        with pytest.raises(SerializationError, match="runs past"):
            SER.deserialize(bytearray(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def _check_inside(obj: Any, whole: Any) -> None:
    """Every array decoded from ``whole`` lies inside it."""
    if isinstance(obj, np.ndarray):
        if obj.nbytes:
            assert np.shares_memory(obj, whole)
    elif isinstance(obj, dict):
        for v in obj.values():
            _check_inside(v, whole)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_inside(v, whole)


def _decode_or_refuse(data: bytes) -> None:
    buf = bytearray(data)
    try:
        back = SER.deserialize(buf)
    except SerializationError:
        return
    _check_inside(back, np.frombuffer(buf, np.uint8) if buf else None)


VALID = SER.serialize(
    {
        "w": np.arange(40, dtype=np.float32).reshape(4, 10),
        "t": (np.int8(3), [1.5, None]),
        "f": np.asfortranarray(np.ones((3, 2))),
    }
)

dtype_strings = st.one_of(
    st.sampled_from(
        [
            "<f4",
            ">f8",
            "|b1",
            "|i1",
            "<u8",
            "<c16",
            "<M8[ns]",
            "|S4",
            "<U2",
            "bfloat16",
            "|O",
            "O",
            "V4",
            "f4,i4",
            "<f0",
            "S0",
            "U0",
            "(3,)i2",
            "<M8[xx]",
            "float32",
            "int",
        ]
    ),
    st.text(max_size=12),
)
descriptors = st.lists(
    st.one_of(
        dtype_strings,
        st.lists(st.integers(-3, (1 << 64) - 1), max_size=40),
        st.integers(-(1 << 63), (1 << 64) - 1),
        st.none(),
        st.floats(),
        st.binary(max_size=8),
    ),
    max_size=6,
)


@fuzz_settings
@given(st.data())
def test_fuzz_mutated_payloads(data: st.DataObject) -> None:
    buf = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    _decode_or_refuse(bytes(buf[:cut]) if data.draw(st.booleans()) else bytes(buf))


@fuzz_settings
@given(
    st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, 5, 127]), descriptors), min_size=1, max_size=4),
    st.integers(0, 300),
    st.one_of(st.none(), st.integers(0, (1 << 32) - 1)),
)
def test_fuzz_crafted_headers(exts: list[tuple[int, list[Any]]], data_len: int, hlen: int | None) -> None:
    tree = [msgpack.ExtType(code, msgpack.packb(desc, use_bin_type=True)) for code, desc in exts]
    _decode_or_refuse(frame(tree, bytes(data_len), hlen=hlen))


@fuzz_settings
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_after_magic(tail: bytes) -> None:
    _decode_or_refuse(b"NCND" + tail)


def test_serialize_parts_is_the_payload_without_the_copy() -> None:
    obj = {"w": np.arange(4096, dtype=np.float32), "f": np.asfortranarray(np.ones((64, 32))), "n": 3}
    parts = SER.serialize_parts(obj)
    assert b"".join(parts) == SER.serialize(obj)
    for arr in (obj["w"], obj["f"]):
        assert any(np.shares_memory(np.frombuffer(p, np.uint8), arr) for p in parts if len(p))


def test_memmapped_weights_are_sent_as_plain_arrays(tmp_path: Any) -> None:
    mm = np.memmap(tmp_path / "w.bin", dtype=np.float32, mode="w+", shape=(64, 16))
    mm[:] = 1.5
    back = roundtrip({"w": mm})["w"]
    assert type(back) is np.ndarray and back.shape == (64, 16) and np.all(back == 1.5)
