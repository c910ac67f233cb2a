"""Interceptors for node-comm: ``logging``, ``auth`` (signed calls) and ``acl``."""

from .acl import AclInterceptor
from .auth import AuthInterceptor
from .logging import LoggingInterceptor

__all__ = ["AclInterceptor", "AuthInterceptor", "LoggingInterceptor"]
