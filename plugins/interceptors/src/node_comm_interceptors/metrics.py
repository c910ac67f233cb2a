"""``metrics``: Prometheus counters, histograms and gauges of every call (prometheus-client).

Install with ``pip install node-comm-interceptors[metrics]``. Labels hold the local node id, the
method, the peer id, the direction and the outcome code; never payload contents. Method names and
error codes a peer sends are folded into bounded sets (an inbound method this node does not serve
is ``<unknown>``; an unknown code ``INTERNAL``), so a peer cannot grow the number of series.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from typing import Any

from node_comm import CallContext, ConfigError, ErrorCode, Interceptor, Message, NodeCommError
from node_comm.interceptor import NextHandler
from node_comm.message import payload_size

PIP_HINT = "pip install 'node-comm-interceptors[metrics]'"
UNKNOWN_METHOD = "<unknown>"
_CACHE_MAX = 10_000  # label children remembered per interceptor
#: Buckets (seconds) from 100 us to 1 min: in-process calls to large transfers.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError(f"the 'metrics' interceptor needs prometheus-client; install it with: {PIP_HINT}") from None
    return prometheus_client


class _Family:
    """The metric objects of one registry (created once: a registry refuses a name twice)."""

    def __init__(self, prom: Any, registry: Any) -> None:
        call = ("node", "method", "peer", "direction", "code")
        self.calls = prom.Counter(
            "node_comm_calls_total", "Calls and notifies finished, by outcome code", call, registry=registry
        )
        self.duration = prom.Histogram(
            "node_comm_call_duration_seconds",
            "Time from a call's start to its outcome (outbound: round trip; inbound: serving)",
            call,
            buckets=BUCKETS,
            registry=registry,
        )
        self.payload = prom.Counter(
            "node_comm_payload_bytes_total",
            "Payload bytes of requests and responses (part), by the call's direction",
            ("node", "method", "peer", "direction", "part"),
            registry=registry,
        )
        self.inflight = prom.Gauge(
            "node_comm_inflight_calls", "Calls started and not finished", ("node", "direction"), registry=registry
        )
        self.peers = prom.Gauge("node_comm_connected_peers", "Peers connected now", ("node",), registry=registry)


_families: weakref.WeakKeyDictionary[Any, _Family] = weakref.WeakKeyDictionary()
_families_lock = threading.Lock()


def _family(prom: Any, registry: Any) -> _Family:
    with _families_lock:
        family = _families.get(registry)
        if family is None:
            family = _families[registry] = _Family(prom, registry)
        return family


def _code_of(reply: Message | None) -> str:
    if reply is not None and reply.error is not None:
        return ErrorCode.parse(reply.error.code).value  # a peer's string: folded into the enum
    return "OK"


#: Servers of fixed ports: (host, port, id(registry)) -> [server, interceptors using it].
_SERVERS: dict[tuple[str, int, int], list[Any]] = {}


class MetricsInterceptor(Interceptor):
    """Counts and times every call and notify, both directions.

    Options: ``port`` (default none: metrics go to the registry only, for an exporter the program
    already runs; set it to serve ``/metrics`` over HTTP with prometheus-client's own server; 0
    picks a free port, see :attr:`port`), ``host`` (default ``127.0.0.1``; ``0.0.0.0`` to let a
    Prometheus server on another machine scrape), ``peer_label`` (default true; false leaves the
    ``peer`` label empty, for nodes with thousands of peers), ``registry`` (default prometheus-client's
    default registry; tests pass their own ``CollectorRegistry``).

    Metrics: ``node_comm_calls_total`` and ``node_comm_call_duration_seconds`` {node, method, peer,
    direction, code}; ``node_comm_payload_bytes_total`` {node, method, peer, direction, part =
    request|response}; gauges ``node_comm_inflight_calls`` {node, direction} and
    ``node_comm_connected_peers`` {node} (kept from the node's connect/disconnect events, which the
    interceptor subscribes to at the first call it sees on that node).
    """

    name = "metrics"

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        peer_label: bool = True,
        registry: Any = None,
    ) -> None:
        prom = _prometheus()
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
            raise ConfigError(f"port: a TCP port number (0-65535) is required, got {port!r}; omit it to serve none")
        if not isinstance(host, str) or not host:
            raise ConfigError(f"host: an address to listen on is required, got {host!r}")
        if registry is not None and not isinstance(registry, prom.CollectorRegistry):
            raise ConfigError(
                f"registry: a prometheus_client.CollectorRegistry is required (in code only), got {registry!r}; "
                "omit it to use the default registry"
            )
        self.registry = prom.REGISTRY if registry is None else registry
        self.peer_label = bool(peer_label)
        self._m = _family(prom, self.registry)
        self._nodes: weakref.WeakSet[Any] = weakref.WeakSet()
        self._methods: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()
        self._server: Any = None
        self._series: dict[tuple[str, str, str, str], tuple[Any, Any, Any]] = {}
        self._outcomes: dict[tuple[tuple[str, str, str, str], str], tuple[Any, Any]] = {}
        self._key: tuple[str, int, int] | None = None
        if port is not None:
            # One server per fixed host:port and registry in a process: building the interceptor
            # again for the same config (load_config checks options, then the node builds it)
            # shares the server instead of failing with "address in use".
            key = (host, port, id(self.registry))
            shared = _SERVERS.get(key) if port else None
            if shared is not None:
                shared[1] += 1
                self._server, self._key = shared[0], key
            else:
                try:
                    self._server, _ = prom.start_http_server(port, addr=host, registry=self.registry)
                except OSError as exc:
                    raise ConfigError(
                        f"port: cannot serve /metrics on {host}:{port}: {exc.strerror or exc}; choose a free port "
                        "(or 0 for any)"
                    ) from None
                if port:
                    self._key = key
                    _SERVERS[key] = [self._server, 1]

    @property
    def port(self) -> int | None:
        """The port ``/metrics`` is served on (the real one when ``port: 0``), or ``None``."""
        return None if self._server is None else int(self._server.server_port)

    def close(self) -> None:
        """Stop the ``/metrics`` HTTP server, once no interceptor of this process uses it."""
        if self._server is None:
            return
        server, self._server = self._server, None
        if self._key is not None:
            shared = _SERVERS.get(self._key)
            if shared is not None:
                shared[1] -= 1
                if shared[1] > 0:
                    return
                del _SERVERS[self._key]
        server.shutdown()
        server.server_close()

    def __repr__(self) -> str:
        return f"<MetricsInterceptor port={self.port} peer_label={self.peer_label}>"

    # ------------------------------------------------------------------ node events
    def _watch(self, node: Any) -> None:
        """Once per node: keep ``node_comm_connected_peers`` from its connect/disconnect events."""
        if node in self._nodes:
            return
        self._nodes.add(node)
        gauge = self._m.peers.labels(node.node_id)
        node_ref = weakref.ref(node)

        def update(*_: Any) -> None:
            n = node_ref()
            if n is not None:
                gauge.set(len(n.connected_nodes))

        node.on("connect", update)
        node.on("disconnect", update)
        update()

    def _method_label(self, node: Any, method: str) -> str:
        """An inbound method name, if this node serves it (peers choose the names they send)."""
        known = self._methods.get(node)
        if known is None or method not in known:  # registered since? look again
            known = self._methods[node] = frozenset(node.methods)
        return method if method in known else UNKNOWN_METHOD

    # ------------------------------------------------------------------ calls
    async def intercept_outbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        return await self._around(message, context, "outbound", context.target, message.method, next_handler)

    async def intercept_inbound(
        self, message: Message, context: CallContext, next_handler: NextHandler
    ) -> Message | None:
        method = self._method_label(context.node, message.method)
        return await self._around(message, context, "inbound", context.source, method, next_handler)

    async def _around(
        self, message: Message, context: CallContext, direction: str, peer: str, method: str, nxt: NextHandler
    ) -> Message | None:
        node = context.node
        if node not in self._nodes:
            self._watch(node)
        key = (node.node_id, method, peer if self.peer_label else "", direction)
        series = self._series.get(key)
        if series is None:
            series = self._series_of(key)
        inflight, request_bytes, response_bytes = series
        request_bytes.inc(payload_size(message))
        inflight.inc()
        start = time.perf_counter()
        code = "OK"
        reply: Message | None = None
        try:
            reply = await nxt(message)
            code = _code_of(reply)
            return reply
        except NodeCommError as exc:
            code = exc.code.value
            raise
        except asyncio.CancelledError:
            code = ErrorCode.CANCELLED.value
            raise
        except BaseException:
            code = ErrorCode.INTERNAL.value
            raise
        finally:
            elapsed = time.perf_counter() - start
            inflight.dec()
            outcome = self._outcomes.get((key, code))
            if outcome is None:
                outcome = self._outcome_of(key, code)
            outcome[0].inc()
            outcome[1].observe(elapsed)
            if reply is not None:
                size = payload_size(reply)
                if size:
                    response_bytes.inc(size)

    # prometheus-client's labels() validates and locks on every lookup: keep the children found.
    # Label values are bounded (known methods, connected peers, ErrorCode), the caches too.
    def _series_of(self, key: tuple[str, str, str, str]) -> tuple[Any, Any, Any]:
        node_id, method, peer, direction = key
        m = self._m
        series = (
            m.inflight.labels(node_id, direction),
            m.payload.labels(node_id, method, peer, direction, "request"),
            m.payload.labels(node_id, method, peer, direction, "response"),
        )
        if len(self._series) >= _CACHE_MAX:
            self._series.clear()
        self._series[key] = series
        return series

    def _outcome_of(self, key: tuple[str, str, str, str], code: str) -> tuple[Any, Any]:
        m = self._m
        outcome = (m.calls.labels(*key, code), m.duration.labels(*key, code))
        if len(self._outcomes) >= _CACHE_MAX:
            self._outcomes.clear()
        self._outcomes[(key, code)] = outcome
        return outcome
