"""Keep freed large buffers in the process for reuse (``NodeConfig.reuse_freed_memory``).

glibc's malloc gives buffers of a few MiB from ``mmap`` and trims the top of its heap as soon as
a few MiB there are free, so every large message (a batch joined for a write, grpc's copy of it,
a received chunk) lands on fresh pages: a page fault per 4 KiB and the kernel zeroing it. For a
16 MiB broadcast to 100 peers that was about two thirds of the coordinator's CPU. Serving buffers
below ``MMAP_THRESHOLD`` from the heap and trimming only past ``TRIM_THRESHOLD`` of free memory
reuses the same pages instead, at the price of a higher peak RSS (freed memory is kept for reuse,
and the heap fragments), so it is opt-in. The setting is process-wide and made once; other C
libraries (musl, macOS) are left alone.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "reuse_freed_memory"]

#: Buffers below this come from the heap, not from a fresh ``mmap`` (glibc's own upper bound for
#: its adaptive threshold).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap kept for reuse before it is given back to the system.
TRIM_THRESHOLD = 64 * 1024 * 1024

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_applied = False


def reuse_freed_memory() -> bool:
    """Apply the settings (once per process); True when they are in effect (glibc only)."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl's mallopt does nothing
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
