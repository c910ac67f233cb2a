"""Serializing and deserializing large payloads off the event loop.

A payload of ``offload_threshold`` bytes or more is (de)serialized in a worker thread of the node's
own small pool, not in the default executor that plain ``def`` handlers run in: a flood of sync
handlers cannot starve decoding, nor the reverse. Smaller payloads stay inline on the loop (no
extra task, await or thread hop on the small-call path).

Decoding knows its size. Encoding does not until it is done, so :func:`looks_large` estimates it
from the object, cheaply: bytes-like objects and arrays by ``len``/``nbytes``, strings by length,
lists/tuples/dicts by their length plus their first items, looking at a bounded number of objects.
An object it cannot see into (a custom class under pickle) counts as small and is encoded inline.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .message import PayloadParts

if TYPE_CHECKING:
    from .serializer import Serializer
    from .transport import Transport

# Objects looked at per estimate: a small payload costs a few of them, a large one stops early.
_BUDGET = 64
_SCALARS = frozenset((int, float, bool, type(None)))


def looks_large(obj: Any, threshold: int) -> bool:
    """Whether encoding ``obj`` probably yields ``threshold`` bytes or more (a cheap estimate).

    Runs on every call's payload and result, so the common small cases (a scalar, a short string,
    a small dict or list of scalars and short strings) cost a few type checks."""
    tp = type(obj)
    if tp is dict:
        if 16 * len(obj) >= threshold:
            return True
        for v in obj.values():
            tv = type(v)
            if tv in _SCALARS or (tv is str and 4 * len(v) < threshold):
                continue
            return _walk(obj, threshold)
        return False
    if tp is str or tp is bytes or tp is bytearray:
        return len(obj) >= threshold
    if tp is list or tp is tuple:
        if 8 * len(obj) >= threshold:
            return True
        for v in obj:
            tv = type(v)
            if tv in _SCALARS or (tv is str and 4 * len(v) < threshold):
                continue
            return _walk(obj, threshold)
        return False
    if tp in _SCALARS:
        return threshold <= 8
    return _walk(obj, threshold)


def _walk(obj: Any, threshold: int) -> bool:
    """``looks_large`` for nested values: sums sizes over at most ``_BUDGET`` objects."""
    size = 0
    budget = _BUDGET
    stack = [obj]
    while stack and budget > 0:
        budget -= 1
        obj = stack.pop()
        tp = type(obj)
        if tp is str or tp is bytes or tp is bytearray:
            size += len(obj)
        elif tp is dict:
            size += 16 * len(obj)
            stack.extend(itertools.islice(obj.values(), budget))
        elif tp is list or tp is tuple:
            size += 8 * len(obj)
            stack.extend(obj[:budget])
        elif tp in _SCALARS:
            size += 8
        else:
            nbytes = getattr(obj, "nbytes", None)  # memoryview, numpy arrays, torch tensors
            if isinstance(nbytes, int):
                size += nbytes
        if size >= threshold:
            return True
    return False


def large_encoder(ser: Serializer, transport: Transport) -> Callable[[Any], bytes | PayloadParts]:
    """How to encode a large payload for ``transport``, in a worker thread: as
    :class:`~node_comm.message.PayloadParts` (no join of the serializer's buffers) when the
    transport sends buffer lists and the serializer makes them, else ``ser.serialize``."""
    from .serializer import Serializer

    if transport.scatter_gather and type(ser).serialize_parts is not Serializer.serialize_parts:
        return lambda obj: PayloadParts(ser.serialize_parts(obj))
    return ser.serialize


def codec_pool(node_id: str) -> ThreadPoolExecutor:
    """A node's pool for (de)serializing large payloads: a few threads, made as they are needed."""
    workers = min(4, max(2, os.cpu_count() or 1))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"node-comm-codec-{node_id}")
