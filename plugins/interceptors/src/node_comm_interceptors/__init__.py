"""Interceptors for node-comm: ``logging`` and ``auth``."""

from .auth import AuthInterceptor
from .logging import LoggingInterceptor

__all__ = ["AuthInterceptor", "LoggingInterceptor"]
