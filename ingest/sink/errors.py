"""Sorts database failures once: retry later, reject the offending rows, or stop.

Three answers, decided by SQLSTATE where the server gave one (Telegraf's temporary/permanent split, with
the permanent side cut in two so that a broken deployment never empties the stream into dead letters):

- `RETRY`: a failure of the moment (connection lost, server restarting, serialization failure, lock
  timeout); the same batch may well succeed after a pause.
- `REJECT`: the data itself is unacceptable to the database (SQLSTATE class 22 data exception, 23
  integrity violation, 54 program limit exceeded); the rows that cause it go to dead letters.
- `FATAL`: anything else (missing table, permission denied, a bug of ours); retrying or dead-lettering
  cannot help, a person must act.
"""

from enum import StrEnum

import psycopg
from psycopg import errors


class Verdict(StrEnum):
    RETRY = "retry"
    REJECT = "reject"
    FATAL = "fatal"


# SQLSTATE classes whose errors are about the values in the rows, not about the database or our SQL.
_DATA_CLASSES = ("22", "23", "54")

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


def sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None)


def classify(exc: BaseException) -> Verdict:
    state = sqlstate(exc)
    # ProgramLimitExceeded is an OperationalError in DB-API terms, yet retrying the same row fails forever:
    # the SQLSTATE class decides before the exception type does.
    if state is not None and state[:2] in _DATA_CLASSES:
        return Verdict.REJECT
    if isinstance(exc, _RETRYABLE):
        return Verdict.RETRY
    return Verdict.FATAL


def is_retryable(exc: BaseException) -> bool:
    return classify(exc) is Verdict.RETRY


def error_class(exc: BaseException) -> str:
    """A metric label: the verdict and, when the server gave one, the SQLSTATE class (e.g. `reject:22`)."""
    state = sqlstate(exc)
    return f"{classify(exc).value}:{state[:2]}" if state else f"{classify(exc).value}:client"


def describe(exc: BaseException) -> str:
    """`SQLSTATE 22P05: unsupported Unicode escape sequence` — what a dead letter's detail says."""
    state = sqlstate(exc)
    diag = getattr(exc, "diag", None)
    message = (diag.message_primary if diag is not None else None) or str(exc).strip().splitlines()[0]
    return f"SQLSTATE {state}: {message}" if state else message
