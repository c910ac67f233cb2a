"""Range checks for option values, shared by the kernel and by plugins.

Each check raises a :class:`ConfigError` that names the key path, the bound that was broken and,
when given, the fix. Option dataclasses call them from ``__post_init__``, one line per field, so a
value is checked whether it comes from YAML or is set in code::

    check_int("transport.grpc.max_connections", self.max_connections, minimum=1, maximum=1_000_000)
    check_seconds("transport.grpc.transfer_timeout", self.transfer_timeout)
    check_bytes("transport.grpc.chunk_size", self.chunk_size, minimum=1024, maximum=16 * MiB)

A number is an ``int`` or a ``float``, never a ``bool``; NaN and infinities are refused everywhere.
"""

from __future__ import annotations

import math
import reprlib

from .exceptions import ConfigError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: Longest duration any option accepts: 7 days. Longer is a typo (or "forever", which options
#: spell as ``null`` or ``0`` where they allow it), and every duration then fits gRPC's 32-bit
#: millisecond arguments.
MAX_SECONDS = 7 * 24 * 3600


def _show(bound: float, unit: str) -> str:
    """A bound as a message shows it: ``16777216 (16 MiB)`` for ``unit="bytes"``, ``604800 (7 days)``
    for ``unit="s"``, else ``0.01``, ``65535``."""
    if unit == "bytes" and isinstance(bound, int) and bound >= KiB:
        for size, name in ((GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
            if bound % size == 0:
                return f"{bound} ({bound // size} {name})"
    if unit == "s" and bound == MAX_SECONDS:
        return f"{bound} (7 days)"
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 60, 60


def short_repr(value: object) -> str:
    """``repr(value)`` in at most 80 characters, at a cost that does not grow with the value (a list
    of shared lists from YAML aliases); a huge integer is shown by its number of digits."""
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"an integer of about {int((value.bit_length() - 1) * 0.30103) + 1} digits"
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(path: str, want: str, value: object, fix: str) -> ConfigError:
    return ConfigError(f"{path}: expected {want}, got {short_repr(value)}{'; ' + fix if fix else ''}")


def check_number(
    path: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    allow_none: bool = False,
    fix: str = "",
    unit: str = "",
) -> None:
    """Raise a :class:`ConfigError` naming ``path`` unless ``value`` is a finite number with
    ``minimum <= value <= maximum`` and ``value > above`` (each bound optional), or ``None`` when
    ``allow_none``. The message states the bound that was broken, then ``fix``; ``unit`` (``"s"``,
    ``"bytes"``) only changes how bounds are shown."""
    if value is None and allow_none:
        return
    if above is not None:
        low = f"a number > {_show(above, unit)}"
    elif minimum is not None:
        low = f"a number >= {_show(minimum, unit)}"
    else:
        low = "a finite number"
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise _fail(path, low, value, fix)
    if (above is not None and value <= above) or (minimum is not None and value < minimum):
        raise _fail(path, low, value, fix)
    if maximum is not None and value > maximum:
        raise _fail(path, f"a number <= {_show(maximum, unit)}", value, fix)
    if not math.isfinite(value):
        raise _fail(path, "a finite number", value, fix)


def check_int(
    path: str,
    value: object,
    *,
    minimum: int,
    maximum: int,
    allow_none: bool = False,
    fix: str = "",
    unit: str = "",
) -> None:
    """Raise a :class:`ConfigError` naming ``path`` unless ``value`` is an ``int`` (not a ``bool``,
    not a float) in ``minimum..maximum``, or ``None`` when ``allow_none``. ``unit="bytes"`` shows
    bounds as ``16777216 (16 MiB)``."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(path, f"an integer >= {_show(minimum, unit)}", value, fix)
    if value > maximum:
        raise _fail(path, f"an integer <= {_show(maximum, unit)}", value, fix)


def check_bytes(
    path: str,
    value: object,
    *,
    minimum: int,
    maximum: int,
    allow_none: bool = False,
    fix: str = "",
) -> None:
    """A size in bytes: :func:`check_int` with bounds shown as ``16777216 (16 MiB)``."""
    check_int(path, value, minimum=minimum, maximum=maximum, allow_none=allow_none, fix=fix, unit="bytes")


def check_seconds(
    path: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float = MAX_SECONDS,
    allow_none: bool = False,
    fix: str = "",
) -> None:
    """A duration in seconds: finite, at most ``maximum`` (7 days) and ``> 0``; ``minimum`` allows
    ``0`` (a grace period, a latency) or sets a floor above zero (a timer that must not spin)."""
    if minimum == 0:
        check_number(path, value, minimum=0, maximum=maximum, allow_none=allow_none, fix=fix, unit="s")
        return
    check_number(path, value, above=0, maximum=maximum, allow_none=allow_none, fix=fix, unit="s")
    if minimum is not None:
        check_number(path, value, minimum=minimum, allow_none=allow_none, fix=fix, unit="s")
