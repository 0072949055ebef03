"""Where a mapped heartbeat field comes from: a path into the message, a topic level, the Kafka key.

Grammar (one compiled `Path` per field, once at load, never per message):
  `a.b[0].c`       keys and list indexes from the current element (the message, or the element of `each`)
  `values["pm2.5"]` a key holding any character (vendors name parameters `PM2.5`)
  `$.a.b`          from the message root, also inside `each`
  `topic[2]`       the third level of the MQTT topic (`topic[-1]`: the last)
  `key`            the Kafka record's key
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

MAX_SEGMENTS = 16
_NAME = re.compile(r"[A-Za-z0-9_@$:-]+")
_INDEX = re.compile(r"\[(-?\d{1,4})\]")
_QUOTED = re.compile(r'\["((?:[^"\\]|\\.){1,128})"\]')
_TOPIC = re.compile(r"topic\[(-?\d{1,2})\]$")

_MISSING = object()


class PathError(ValueError):
    """A path that cannot be compiled; the message says where in it."""


class Where(NamedTuple):
    """What a path is read against: the message, the element of `each` being mapped, the transport's names.
    (A tuple: one is built per element mapped, and a tuple costs a third of a frozen dataclass.)"""

    root: Any
    element: Any
    topic_levels: tuple[str, ...] = ()
    key: str | None = None


MISSING = _MISSING


@dataclass(frozen=True)
class Path:
    """A compiled path: `read(where)` is the value there, or `MISSING`. The reader is built once per path, with
    the usual shapes (one key, two keys) as their own functions, since it runs for every field of every
    message."""

    text: str
    origin: str  # "element", "root", "topic", "key"
    steps: tuple[str | int, ...] = ()
    read: Callable[[Where], Any] = field(default=lambda where: _MISSING, compare=False, repr=False)


def _reader(origin: str, steps: tuple[str | int, ...]) -> Callable[[Where], Any]:
    if origin == "topic":
        index = steps[0]

        def topic_level(where: Where) -> Any:
            levels = where.topic_levels
            return levels[index] if -len(levels) <= index < len(levels) else _MISSING  # type: ignore[operator]
        return topic_level
    if origin == "key":
        return lambda where: _MISSING if where.key is None else where.key
    at = 0 if origin == "root" else 1  # Where's field
    if not steps:
        return lambda where: where[at]
    if len(steps) == 1 and type(steps[0]) is str:
        only = steps[0]

        def one_key(where: Where) -> Any:
            value = where[at]
            return value.get(only, _MISSING) if type(value) is dict else _MISSING
        return one_key
    if len(steps) == 2 and type(steps[0]) is str and type(steps[1]) is str:
        first, second = steps

        def two_keys(where: Where) -> Any:
            value = where[at]
            if type(value) is not dict or type(value := value.get(first, _MISSING)) is not dict:
                return _MISSING
            return value.get(second, _MISSING)
        return two_keys

    def walk(where: Where) -> Any:
        value = where[at]
        for step in steps:
            if type(step) is int:
                if type(value) is not list or not -len(value) <= step < len(value):
                    return _MISSING
                value = value[step]
            else:
                if type(value) is not dict:
                    return _MISSING
                value = value.get(step, _MISSING)
                if value is _MISSING:
                    return _MISSING
        return value
    return walk


def _path(text: str, origin: str, steps: tuple[str | int, ...] = ()) -> Path:
    return Path(text, origin, steps, _reader(origin, steps))


def compile_path(text: str) -> Path:
    if not isinstance(text, str) or not text:
        raise PathError("a path must be a non-empty string")
    if len(text) > 512:
        raise PathError(f"path of {len(text)} characters > 512")
    if (topic := _TOPIC.match(text)) is not None:
        return _path(text, "topic", (int(topic.group(1)),))
    if text == "key":
        return _path(text, "key")
    origin, rest = ("root", text[1:]) if text.startswith("$") else ("element", text)
    if origin == "root" and rest in ("", "."):
        return _path(text, "root")
    if origin == "root":
        if not rest.startswith((".", "[")):
            raise PathError(f"{text!r}: after '$' comes '.' or '['")
        rest = rest[1:] if rest.startswith(".") else rest
    steps: list[str | int] = []
    at = 0
    while at < len(rest):
        if rest[at] == ".":
            if at == 0 or at + 1 == len(rest):
                raise PathError(f"{text!r}: a '.' at column {at + 1} with no key on one side")
            at += 1
        if (quoted := _QUOTED.match(rest, at)) is not None:
            steps.append(re.sub(r"\\(.)", r"\1", quoted.group(1)))
            at = quoted.end()
        elif (index := _INDEX.match(rest, at)) is not None:
            steps.append(int(index.group(1)))
            at = index.end()
        elif (name := _NAME.match(rest, at)) is not None:
            steps.append(name.group(0))
            at = name.end()
        else:
            raise PathError(f"{text!r}: cannot read a key or [index] at {rest[at:at + 12]!r}")
        if at < len(rest) and rest[at] not in ".[":
            raise PathError(f"{text!r}: expected '.' or '[' at {rest[at:at + 12]!r}")
        if len(steps) > MAX_SEGMENTS:
            raise PathError(f"{text!r}: more than {MAX_SEGMENTS} steps")
    return _path(text, origin, tuple(steps))
