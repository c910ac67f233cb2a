"""``acl``: which node may call which method, as fnmatch globs; everything else is refused.

The caller's id is ``ctx.source``, the id the transport assigned to the link. The ACL is only as
trustworthy as that: over gRPC without mTLS and bound node ids, a peer may claim any id that is not
connected. ``auth`` before ``acl`` keeps out peers without the token, but every holder of the shared
token can still claim any id; where ids must not be claimable, use a transport that authenticates
them (mTLS with ``tls.bind_node_id``).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from node_comm import CallContext, CallRejectedError, ConfigError, ErrorCode, Interceptor, Message
from node_comm.interceptor import NextHandler

_CACHE_MAX = 4096  # decisions remembered per (method, caller); cleared when full


class AclInterceptor(Interceptor):
    """Option ``allow``: ``{"method-glob": ["node-id-glob", ...]}`` (fnmatch, case-sensitive).

    Once configured, the default is deny: an inbound call or notify whose (method, caller) matches
    no rule is ``PERMISSION_DENIED`` before its payload is decoded, and its handler never runs.
    Framework methods (names starting with ``_``, e.g. ``_heartbeat``) are allowed unless a rule
    whose method glob itself starts with ``_`` matches them. Outbound calls are not checked.
    """

    name = "acl"

    def __init__(self, allow: dict[str, list[str]]) -> None:
        self.rules = _parse_rules(allow)
        self._cache: dict[tuple[str, str], bool] = {}

    def __repr__(self) -> str:
        return f"<AclInterceptor rules={len(self.rules)}>"

    def allows(self, method: str, caller: str) -> bool:
        """Whether ``caller`` may call ``method`` under these rules."""
        key = (method, caller)
        decision = self._cache.get(key)
        if decision is None:
            decision = self._decide(method, caller)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = decision
        return decision

    def _decide(self, method: str, caller: str) -> bool:
        framework = method.startswith("_")
        named = False
        for method_glob, method_re, callers in self.rules:
            if framework and not method_glob.startswith("_"):
                continue  # "*" does not reach the framework's own methods
            if method_re.match(method):
                named = True
                if any(c.match(caller) for c in callers):
                    return True
        return framework and not named

    async def intercept_inbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        if not self.allows(message.method, message.source):
            raise CallRejectedError(
                ErrorCode.PERMISSION_DENIED,
                f"node {message.source!r} may not call {message.method[:200]!r} on node {message.target!r}: "
                "no rule of its acl allows it; add the caller to a rule under the acl interceptor's "
                "options.allow on that node",
            )
        return await next_handler(message)


def _parse_rules(allow: Any) -> list[tuple[str, re.Pattern[str], list[re.Pattern[str]]]]:
    """Check ``allow`` and compile its globs; a ConfigError says which entry is wrong and how."""
    example = "e.g. allow: {'train*': ['worker-*'], 'status': ['*']}"
    if not isinstance(allow, dict):
        raise ConfigError(
            f"allow: expected a mapping of method glob to a list of node-id globs ({example}), "
            f"got {type(allow).__name__}"
        )
    if not allow:
        raise ConfigError(f"allow: at least one rule is required (an empty acl would refuse every call); {example}")
    rules = []
    for method_glob, callers in allow.items():
        if not isinstance(method_glob, str) or not method_glob:
            raise ConfigError(f"allow: method globs must be non-empty strings, got {method_glob!r}")
        path = f"allow[{method_glob!r}]"
        if isinstance(callers, str):
            raise ConfigError(
                f"{path}: expected a list of node-id globs, got the string {callers!r}; write [{callers!r}]"
            )
        if not isinstance(callers, list) or not callers:
            raise ConfigError(f"{path}: expected a non-empty list of node-id globs ({example}), got {callers!r}")
        compiled = []
        for i, glob in enumerate(callers):
            if not isinstance(glob, str) or not glob:
                raise ConfigError(f"{path}[{i}]: node-id globs must be non-empty strings, got {glob!r}")
            compiled.append(re.compile(fnmatch.translate(glob)))
        rules.append((method_glob, re.compile(fnmatch.translate(method_glob)), compiled))
    return rules
