"""Where a mapped heartbeat field comes from: a path into the message, a topic level, the Kafka key.

Grammar (one compiled `Path` per field, once at load, never per message):
  `a.b[0].c`       keys and list indexes from the current element (the message, or the element of `each`)
  `values["pm2.5"]` a key holding any character (vendors name parameters `PM2.5`)
  `$.a.b`          from the message root, also inside `each`
  `topic[2]`       the third level of the MQTT topic (`topic[-1]`: the last)
  `key`            the Kafka record's key
"""

import re
from dataclasses import dataclass
from typing import Any

MAX_SEGMENTS = 16
_NAME = re.compile(r"[A-Za-z0-9_@$:-]+")
_INDEX = re.compile(r"\[(-?\d{1,4})\]")
_QUOTED = re.compile(r'\["((?:[^"\\]|\\.){1,128})"\]')
_TOPIC = re.compile(r"topic\[(-?\d{1,2})\]$")

_MISSING = object()


class PathError(ValueError):
    """A path that cannot be compiled; the message says where in it."""


@dataclass(frozen=True)
class Where:
    """What a path is read against: the message, the element of `each` being mapped, the transport's names."""

    root: Any
    element: Any
    topic_levels: tuple[str, ...] = ()
    key: str | None = None


@dataclass(frozen=True)
class Path:
    text: str
    origin: str  # "element", "root", "topic", "key"
    steps: tuple[str | int, ...] = ()

    def read(self, where: Where) -> Any:
        """The value at this path, or `MISSING`."""
        if self.origin == "topic":
            index = self.steps[0]
            assert isinstance(index, int)
            levels = where.topic_levels
            return levels[index] if -len(levels) <= index < len(levels) else _MISSING
        if self.origin == "key":
            return _MISSING if where.key is None else where.key
        value = where.root if self.origin == "root" else where.element
        for step in self.steps:
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


MISSING = _MISSING


def compile_path(text: str) -> Path:
    if not isinstance(text, str) or not text:
        raise PathError("a path must be a non-empty string")
    if len(text) > 512:
        raise PathError(f"path of {len(text)} characters > 512")
    if (topic := _TOPIC.match(text)) is not None:
        return Path(text, "topic", (int(topic.group(1)),))
    if text == "key":
        return Path(text, "key")
    origin, rest = ("root", text[1:]) if text.startswith("$") else ("element", text)
    if origin == "root" and rest in ("", "."):
        return Path(text, "root")
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
    return Path(text, origin, tuple(steps))
