"""Interceptors for node-comm: ``logging``, ``auth`` (signed calls), ``acl``, ``metrics`` (Prometheus)
and ``tracing`` (OpenTelemetry); the last two need their extra installed."""

from .acl import AclInterceptor
from .auth import AuthInterceptor
from .logging import LoggingInterceptor
from .metrics import MetricsInterceptor
from .tracing import TracingInterceptor

__all__ = ["AclInterceptor", "AuthInterceptor", "LoggingInterceptor", "MetricsInterceptor", "TracingInterceptor"]
