"""``numpy``: dicts, lists and tuples of numpy arrays (and torch CPU tensors) with no user packing,
safe to accept from unauthenticated peers.

Arrays keep dtype, shape and memory order; beside them go ``str``, ``int``, ``float``, ``bool``,
``None``, ``bytes`` and numpy scalars, nested in dicts, lists and tuples. Decoding runs no code a
peer chose (no pickle, no object dtypes) and checks every length, offset, dtype and shape against
the payload: a hostile payload is a :class:`~node_comm.SerializationError`, never a crash, a large
allocation or a read out of bounds. Frame (little-endian)::

    magic b"NCND" | u8 version=1 | 3 zero bytes | u32 len(header) | header | pad to 64 | data

The header is msgpack of the payload's tree, each array an extension value
``[dtype, shape, fortran, offset, flags]`` pointing into the data region, where arrays start at
multiples of 64 bytes. Encoding copies each array once (into the payload). Decoded arrays are views
of the received payload (``np.frombuffer``), always writable: without a copy when the transport
hands a writable buffer (gRPC reassembles payloads above ``chunk_size`` in a ``bytearray``), after
one copy of the payload when it is read-only (``bytes``: small gRPC payloads, the memory
transport). Such arrays keep the whole received payload alive; ``.copy()`` one to let it go.

numpy is an optional dependency: ``pip install 'node-comm-serializers[numpy]'``.
"""

from __future__ import annotations

import re
import struct
import sys
from collections.abc import Mapping
from typing import Any

import msgpack

from node_comm import SerializationError, Serializer

_MAGIC = b"NCND"
_VERSION = 1
_PREFIX = struct.Struct("<4sB3xI")
_ALIGN = 64
_PAD = bytes(_ALIGN)
_MAX_DEPTH = 100  # nesting of containers; a payload deeper than this is refused both ways
_MAX_NDIM = 32
_MAX_DIM = 1 << 62

_ARRAY, _TUPLE, _SCALAR, _TORCH = 1, 2, 3, 4
_F_FORTRAN = 1
_F_BF16_TENSOR = 2  # a torch.bfloat16 tensor (numpy has no bfloat16: sent as its int16 bits)

#: numpy dtypes sent by ``dtype.str``: bool, ints, floats, complex, datetimes, fixed bytes/str.
_DTYPE_RE = re.compile(r"[<>|=]?(?:[biufcSU][0-9]{1,9}|[mM]8(?:\[[0-9]{0,9}[a-zA-Z]{1,3}\])?)\Z")
#: dtypes from the ``ml_dtypes`` package (as used by jax and torch), sent by name.
_ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2")

_INSTALL = "the numpy serializer needs numpy: pip install 'node-comm-serializers[numpy]'"


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise SerializationError(_INSTALL) from None
    return numpy


def _up(n: int) -> int:
    return (n + _ALIGN - 1) & -_ALIGN


class NumpySerializer(Serializer):
    """Trees of numpy arrays, torch CPU tensors and JSON-like scalars (see the module docstring)."""

    #: A class attribute, not a property: read on every call (a Python call less each time).
    name = "numpy"

    # ------------------------------------------------------------------ encode
    def serialize(self, obj: Any) -> bytes:
        return b"".join(self.serialize_parts(obj))  # the one copy of each array

    def serialize_parts(self, obj: Any) -> list[Any]:
        """The payload as a list of buffers, ``b"".join(parts) == serialize(obj)``, without the copy:
        arrays are views of their own memory (a strided one is gathered first), valid until they
        change. For a transport that can send a list of buffers (scatter-gather)."""
        np = _numpy()
        arrays: list[Any] = []  # the data region, in order
        size = 0  # bytes of the data region so far
        depth = 0

        def add(arr: Any, code: int, flags: int = 0) -> msgpack.ExtType:
            nonlocal size
            dt = arr.dtype
            if dt.hasobject or dt.fields is not None or dt.subdtype is not None:
                raise TypeError(
                    f"numpy arrays of dtype {dt} cannot be sent: only plain numeric, bool, "
                    "datetime and fixed-width bytes/str dtypes (no objects, no records)"
                )
            if dt.kind == "V":
                if dt.name not in _ML_DTYPES:
                    raise TypeError(f"numpy arrays of dtype {dt} cannot be sent")
                dtype = dt.name
            else:
                dtype = dt.str
            if arr.flags.c_contiguous:
                data = arr
            elif arr.flags.f_contiguous:
                data, flags = arr.T, flags | _F_FORTRAN  # its transpose is C-contiguous: no copy
            else:
                data = np.ascontiguousarray(arr)  # a strided view: gathered first
            offset = _up(size)
            arrays.append((offset - size, data))
            size = offset + arr.nbytes
            desc = [dtype, list(arr.shape), offset, flags]
            return msgpack.ExtType(code, msgpack.packb(desc))

        def default(o: Any) -> Any:
            nonlocal depth
            if isinstance(o, np.ndarray):
                if isinstance(o, np.ma.MaskedArray):  # its mask would be silently lost
                    raise TypeError("masked arrays cannot be sent; send their .data and .mask as two arrays")
                return add(o, _ARRAY)  # subclasses (np.memmap, ...) arrive as plain arrays
            if isinstance(o, np.generic):
                return add(np.asarray(o), _SCALAR)
            if isinstance(o, tuple):
                depth += 1
                if depth > _MAX_DEPTH:
                    raise ValueError(f"payload nests deeper than {_MAX_DEPTH} levels")
                try:
                    return msgpack.ExtType(_TUPLE, pack(list(o)))
                finally:
                    depth -= 1
            if isinstance(o, Mapping):
                return dict(o)
            if isinstance(o, list):
                return list(o)
            torch = sys.modules.get("torch")
            if torch is not None and isinstance(o, torch.Tensor):
                return _tensor(o, torch, add)
            raise TypeError(
                f"the numpy serializer cannot encode {type(o).__name__}; it takes dicts, lists and tuples of "
                "numpy arrays, torch CPU tensors, numpy scalars, str, int, float, bool, None and bytes"
            )

        def pack(o: Any) -> bytes:
            return msgpack.packb(o, default=default, strict_types=True, use_bin_type=True)  # type: ignore[no-any-return]

        header = pack(obj)
        prefix = _PREFIX.pack(_MAGIC, _VERSION, len(header))
        start = _up(len(prefix) + len(header))
        parts: list[Any] = [prefix, header, _PAD[: start - len(prefix) - len(header)]]
        for pad, data in arrays:
            if pad:
                parts.append(_PAD[:pad])
            if data.nbytes:  # a flat byte view: datetimes and ml_dtypes export no buffer of their own
                parts.append(data.reshape(-1).view(np.uint8))
        return parts

    # ------------------------------------------------------------------ decode
    def deserialize(self, data: bytes) -> Any:
        np = _numpy()
        try:
            return _decode(np, data)
        except SerializationError:
            raise
        except RecursionError:
            raise SerializationError("numpy-serializer payload nests too deep") from None
        except Exception as exc:
            raise SerializationError(f"malformed numpy-serializer payload: {type(exc).__name__}: {exc}") from None


def _decode(np: Any, data: Any) -> Any:
    """``deserialize`` itself; anything it raises becomes a SerializationError there."""
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    total = view.nbytes
    if total < _PREFIX.size or view[:4] != _MAGIC:
        raise SerializationError("not a numpy-serializer payload (bad magic)")
    _, version, hlen = _PREFIX.unpack_from(view)
    if version != _VERSION:
        raise SerializationError(f"numpy-serializer payload of version {version}; this node reads {_VERSION}")
    start = _up(_PREFIX.size + hlen)
    if _PREFIX.size + hlen > total:
        raise SerializationError(f"numpy-serializer header of {hlen} bytes runs past the payload's {total}")
    header = view[_PREFIX.size : _PREFIX.size + hlen]
    if view.readonly:  # arrays are always writable: one copy of a read-only payload
        view = memoryview(bytearray(view))
    region = max(total - start, 0)
    depth = 0

    def array(ext: bytes, code: int) -> Any:
        try:
            dtype_s, shape, offset, flags = msgpack.unpackb(ext, use_list=True)
        except Exception:
            raise ValueError("malformed array descriptor") from None
        dt = _dtype(np, dtype_s)
        if (
            type(shape) is not list
            or len(shape) > _MAX_NDIM
            or any(type(d) is not int or not 0 <= d < _MAX_DIM for d in shape)
        ):
            raise ValueError(f"bad array shape {repr(shape)[:80]}")
        if type(offset) is not int or type(flags) is not int or not 0 <= flags < 4:
            raise ValueError("bad array offset or flags")
        count = 1
        for d in shape:
            count *= d
        nbytes = count * dt.itemsize
        if not 0 <= offset or offset + nbytes > region:
            raise ValueError(f"array of {nbytes} bytes at offset {offset} runs past the data region's {region}")
        arr = np.frombuffer(view, dt, count, start + offset) if count else np.empty(0, dt)
        if flags & _F_FORTRAN:
            arr = arr.reshape(shape[::-1]).T
        else:
            arr = arr.reshape(shape)
        if code == _SCALAR:
            if shape:
                raise ValueError("a numpy scalar with a shape")
            return arr[()]
        if code == _TORCH:
            return _to_tensor(np, arr, flags)
        return arr

    def hook(code: int, ext: bytes) -> Any:
        nonlocal depth
        if code == _TUPLE:
            depth += 1
            if depth > _MAX_DEPTH:
                raise ValueError(f"payload nests deeper than {_MAX_DEPTH} levels")
            try:
                return tuple(unpack(ext))
            finally:
                depth -= 1
        if code in (_ARRAY, _SCALAR, _TORCH):
            return array(ext, code)
        raise ValueError(f"unknown extension type {code}")

    def unpack(b: Any) -> Any:
        return msgpack.unpackb(b, ext_hook=hook, raw=False, strict_map_key=False, use_list=True)

    return unpack(header)


def _dtype(np: Any, s: Any) -> Any:
    if type(s) is not str:
        raise ValueError("bad dtype")
    if s in _ML_DTYPES:
        try:
            import ml_dtypes
        except ImportError:
            raise SerializationError(f"the payload holds {s} arrays; install ml_dtypes to receive them") from None
        return np.dtype(getattr(ml_dtypes, s))
    if not _DTYPE_RE.match(s):
        raise ValueError(f"dtype {s[:40]!r} is not accepted")
    dt = np.dtype(s)
    if dt.hasobject or dt.itemsize == 0 or dt.kind not in "biufcmMSU":
        raise ValueError(f"dtype {s!r} is not accepted")
    return dt


def _tensor(t: Any, torch: Any, add: Any) -> Any:
    if t.device.type != "cpu":
        raise TypeError(f"torch tensors on {t.device} cannot be sent; move them to the CPU first (.cpu())")
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return add(t.contiguous().view(torch.int16).numpy(), _TORCH, _F_BF16_TENSOR)
    return add(t.numpy(), _TORCH)


def _to_tensor(np: Any, arr: Any, flags: int) -> Any:
    try:
        import torch
    except ImportError:
        raise SerializationError("the payload holds torch tensors; install torch to receive them") from None
    if flags & _F_BF16_TENSOR:
        if arr.dtype != np.int16:
            raise ValueError("a bfloat16 tensor must travel as int16")
        return torch.from_numpy(arr).view(torch.bfloat16)
    return torch.from_numpy(arr)
