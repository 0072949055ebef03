"""A throwaway MQTT broker on loopback: Mosquitto when installed, else an amqtt broker in a child process."""

import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import ServiceUnavailable
from devstack.ports import free_loopback_port, port_accepts, wait_until
from devstack.process import ChildService

log = logging.getLogger(__name__)

# Mosquitto's default of 20 unacknowledged QoS 1 messages per client would make every database commit
# wait on 20 messages; our ingest acknowledges after commit, so it needs a deeper window.
# Autosave rewrites the whole in-memory store on the broker's only thread: every second, with a backlog of
# a million messages (~760 MB), it starved keep-alives and ingest reconnected in a loop. A clean stop saves
# anyway, which is what the restart tests rely on.
MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {workdir}/
autosave_interval 60
max_inflight_messages {max_inflight}
max_queued_messages 0
max_packet_size 1048576
log_dest file {workdir}/mosquitto.log
log_type error
log_type warning
log_type notice
"""

AMQTT_CONF = """\
listeners:
  default:
    type: tcp
    bind: 127.0.0.1:{port}
plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
"""


@dataclass(frozen=True)
class TlsListener:
    """A second, TLS-only listener: the broker's certificate and key, and the CA its clients' certificates
    must chain to when `require_certificate` (mutual TLS)."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False

    def config(self, port: int) -> str:
        return (f"listener {port} 127.0.0.1\ncafile {self.cafile}\ncertfile {self.certfile}\n"
                f"keyfile {self.keyfile}\n"
                f"require_certificate {'true' if self.require_certificate else 'false'}\n")


def find_mosquitto() -> str | None:
    # Debian installs it in /usr/sbin, which a non-root user's PATH usually lacks.
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


class LocalMqttBroker(ChildService):
    """Start with `with LocalMqttBroker() as broker:`; `broker.url` is `mqtt://127.0.0.1:PORT`.

    `implementation` is "mosquitto", "amqtt" or None (Mosquitto when on PATH, else amqtt). With `tls`
    (Mosquitto only) it also listens with TLS at `broker.tls_url`, `mqtts://127.0.0.1:TLS_PORT`. Mosquitto
    saves its persistent sessions at `stop()`, so that `start()` resumes them.
    """

    def __init__(self, *, implementation: str | None = None, workdir: Path | None = None,
                 port: int | None = None, max_inflight: int = 1000, startup_timeout_s: float = 30,
                 security: str | None = None, tls: TlsListener | None = None) -> None:
        self.implementation = implementation or ("mosquitto" if find_mosquitto() else "amqtt")
        super().__init__(Path(workdir or tempfile.mkdtemp(prefix="citykpi-mqtt-")), own_workdir=workdir is None)
        self.port = port or free_loopback_port()
        self.max_inflight = max_inflight
        self.startup_timeout_s = startup_timeout_s
        # Mosquitto only: lines such as password_file/acl_file that replace anonymous access.
        self.security = security
        if tls is not None and self.implementation != "mosquitto":
            raise ServiceUnavailable("a TLS listener needs mosquitto (Debian: apt-get install mosquitto)")
        self.tls = tls
        self.tls_port = free_loopback_port() if tls is not None else None
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.tls_url = f"mqtts://127.0.0.1:{self.tls_port}" if self.tls_port is not None else None
        self.supports_mqtt5 = self.implementation == "mosquitto"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.implementation}.log"

    def _command(self) -> list[str]:
        if self.implementation == "mosquitto":
            mosquitto = find_mosquitto()
            if mosquitto is None:
                raise ServiceUnavailable("mosquitto is not on PATH (Debian: apt-get install mosquitto)")
            conf = self.workdir / "mosquitto.conf"
            text = MOSQUITTO_CONF.format(port=self.port, workdir=self.workdir, max_inflight=self.max_inflight)
            if self.security:
                text = text.replace("allow_anonymous true\n", "allow_anonymous false\n") + self.security
            if self.tls is not None and self.tls_port is not None:
                text += self.tls.config(self.tls_port)
            if os.geteuid() == 0:
                # Mosquitto drops root for the 'mosquitto' account, which may not exist or own workdir.
                text += f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
            conf.write_text(text)
            return [mosquitto, "-c", str(conf)]
        if importlib.util.find_spec("amqtt") is None:
            raise ServiceUnavailable("neither mosquitto on PATH (Debian: apt-get install mosquitto) nor the amqtt "
                                     "package (pip install 'citykpi[devstack]')")
        conf = self.workdir / "amqtt.yaml"
        conf.write_text(AMQTT_CONF.format(port=self.port))
        return [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]

    def start(self) -> "LocalMqttBroker":
        command = self._command()
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, process_group=0)
        try:
            wait_until(self._ready, timeout_s=self.startup_timeout_s, what=f"{self.implementation} on {self.port}")
        except TimeoutError as exc:
            self.stop()
            raise ServiceUnavailable(f"{self.implementation} did not start: {exc}\n{self._log_tail()}") from exc
        log.info("%s started on 127.0.0.1:%d", self.implementation, self.port)
        return self

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise ServiceUnavailable(
                f"{self.implementation} exited with {self._process.returncode}\n{self._log_tail()}")
        return port_accepts(self.port) and (self.tls_port is None or port_accepts(self.tls_port))

