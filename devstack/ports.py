import socket
import time
from collections.abc import Callable


def free_loopback_port() -> int:
    """A port that was free a moment ago; the caller binds it soon after, which is good enough on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.05,
               what: str = "condition") -> None:
    """Poll `condition` until it holds; raise TimeoutError naming `what` when the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)
