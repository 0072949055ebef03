"""Sorts database failures once: retry later, or give up on this batch."""

import psycopg
from psycopg import errors

# Failures of the moment: the same statement may well succeed after a pause (Telegraf's temporary class).
_RETRYABLE = (
    psycopg.OperationalError,
    errors.SerializationFailure,
    errors.DeadlockDetected,
    errors.LockNotAvailable,
    errors.QueryCanceled,
    errors.AdminShutdown,
    errors.CannotConnectNow,
    errors.TooManyConnections,
)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, _RETRYABLE)


def error_class(exc: BaseException) -> str:
    return "retryable" if is_retryable(exc) else "permanent"
