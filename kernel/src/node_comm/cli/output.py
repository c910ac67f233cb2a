"""What every subcommand shares: exit codes, errors on stderr, JSON and plain-text tables."""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

#: The call or check ran and succeeded.
EXIT_OK = 0
#: The call or check ran and failed (remote error, unreachable peer, not serving).
EXIT_FAILED = 1
#: The command line or a config file is wrong; nothing was attempted.
EXIT_USAGE = 2


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class UsageError(Exception):
    """A mistake on the command line that argparse cannot see (bad JSON, bad ``--app``): exit 2."""


def safe(text: object) -> str:
    """``text`` with control characters other than newline and tab escaped (``\\x1b``): what a
    peer sends (error messages, ids, reasons) must not drive the user's terminal."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), str(text))


def error(message: str) -> None:
    """Print ``node-comm: error: MESSAGE`` on stderr (control characters escaped)."""
    print(f"node-comm: error: {safe(message)}", file=sys.stderr, flush=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes_base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


def dumps(value: Any, *, indent: int | None = 2) -> str:
    """``value`` as JSON; bytes become ``{"$bytes_base64": ...}``, other non-JSON values their repr."""
    return json.dumps(value, indent=indent, ensure_ascii=False, default=_jsonable)


def print_json(value: Any) -> None:
    print(dumps(value), flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: a header, a rule, and left-aligned columns two spaces apart."""
    cells = [[safe(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])
