"""Entry point of the interceptors plugin."""

from __future__ import annotations

from node_comm import hookimpl
from node_comm.registry import InterceptorRegister

from .acl import AclInterceptor
from .auth import AuthInterceptor
from .logging import LoggingInterceptor
from .metrics import MetricsInterceptor
from .tracing import TracingInterceptor


@hookimpl
def node_comm_register_interceptors(register: InterceptorRegister) -> None:
    register("logging", LoggingInterceptor)
    register("auth", AuthInterceptor)
    register("acl", AclInterceptor)
    # Registered even when their optional dependency is missing: configuring one then says what to install.
    register("metrics", MetricsInterceptor)
    register("tracing", TracingInterceptor)
