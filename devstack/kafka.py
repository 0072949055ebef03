"""A throwaway single-node Kafka broker (KRaft, no ZooKeeper, no Docker) on loopback, for the tests and CI.

The jars come from Maven Central through deploy/kafka/pom.xml and are cached per version, so only the
first run on a machine needs Maven and the network; every run needs Java 17+.
"""

import atexit
import base64
import collections
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import ServiceUnavailable
from devstack.ports import free_loopback_port, port_accepts, wait_until

log = logging.getLogger(__name__)

# Keep in step with <kafka.version> in deploy/kafka/pom.xml; it is also passed to Maven with -D.
KAFKA_VERSION = "4.4.0"
POM = Path(__file__).resolve().parents[1] / "deploy" / "kafka" / "pom.xml"
_STARTED_LINE = "Kafka Server started"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _tool(name: str, install_hint: str) -> str:
    if name == "java" and (home := os.environ.get("JAVA_HOME")) and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    path = shutil.which(name)
    if path is None:
        raise ServiceUnavailable(f"'{name}' not found on PATH: the Kafka test broker needs it "
                                 f"({install_hint})")
    return path


def _has_jars(directory: Path) -> bool:
    return directory.is_dir() and any(directory.glob("*.jar"))


def resolve_kafka_jars(cache_dir: Path | None = None) -> Path:
    """A directory holding the broker's runtime classpath, downloaded with Maven on first use."""
    override = os.environ.get("CITYKPI_KAFKA_JARS")
    if cache_dir is None and override and _has_jars(Path(override)):
        return Path(override)
    target = cache_dir or Path.home() / ".cache" / "citykpi" / f"kafka-{KAFKA_VERSION}"
    if _has_jars(target):
        return target
    _tool("java", "apt-get install openjdk-17-jre-headless")
    mvn = _tool("mvn", "apt-get install maven")
    if not POM.exists():
        raise ServiceUnavailable(f"{POM} is missing; it lists the Kafka jars to download")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Download beside the target and rename at the end, so that a run interrupted half way, or two test
    # workers resolving at once, never leave a directory that looks complete but is not.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    command = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", "-DincludeScope=runtime",
               f"-DoutputDirectory={staging}", f"-Dkafka.version={KAFKA_VERSION}"]
    print(f"Resolving Kafka {KAFKA_VERSION} jars with Maven into {target} (first run only)...",
          file=sys.stderr, flush=True)
    tail: collections.deque[str] = collections.deque(maxlen=40)
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) as mvn_run:
            assert mvn_run.stdout is not None
            for raw in mvn_run.stdout:
                # Debian's Maven 3.8 prints colour resets even in batch mode.
                if line := _ANSI.sub("", raw).rstrip():
                    print(f"  mvn: {line}", file=sys.stderr, flush=True)
                    tail.append(line)
        if mvn_run.returncode != 0 or not _has_jars(staging):
            raise ServiceUnavailable(
                f"Maven could not fetch the Kafka jars (exit {mvn_run.returncode}); it needs Maven Central."
                f"\n$ {' '.join(command)}\n" + "\n".join(tail))
        try:
            staging.rename(target)  # replaces an empty directory; fails if another worker got there first
        except OSError:
            if not _has_jars(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _jar_version(jars: Path) -> str:
    names = sorted(jars.glob("kafka_2.13-*.jar"))
    return names[0].stem.removeprefix("kafka_2.13-") if names else KAFKA_VERSION


@dataclass(frozen=True)
class KafkaTls:
    """The server side of a TLS listener, in PEM: the certificate (its chain after it, if any) and its private key,
    unencrypted PKCS#8 (Kafka refuses a PKCS#1 "RSA PRIVATE KEY" at start). Clients check the certificate
    against the host they connect to, here 127.0.0.1: it needs subjectAltName IP:127.0.0.1 (tests/tls_helpers.py
    issues such certificates)."""

    cert: Path
    key: Path


class KafkaBroker:
    """`with KafkaBroker(tmp_path) as kafka:` gives a ready broker at `kafka.bootstrap`, data in workdir.

    With `scram_users` ({name: password}) its only client listener is SASL_PLAINTEXT, SCRAM-SHA-512 or -256,
    and those users exist from the start (created when the storage is formatted); `admin_password` is the
    password of `admin`, the broker's own user. The controller listener stays PLAINTEXT on loopback.
    With `authorizer` too, ACLs apply: `admin` (and the controller listener's ANONYMOUS, which the broker
    itself uses to reach its controller) are super users, everyone else needs ACLs.
    With `tls`, a second client listener, EXTERNAL at `tls_bootstrap`, speaks TLS (SSL, or SASL_SSL with
    `scram_users`), configured as deploy/README.md §6 says: Kafka's PEM keystore, one file holding the key followed
    by the certificate. The first listener stays as it is and carries the inter-broker traffic.
    """

    def __init__(self, workdir: Path, *, port: int | None = None, jars: Path | None = None,
                 startup_timeout_s: float = 90, scram_users: dict[str, str] | None = None,
                 authorizer: bool = False, tls: KafkaTls | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port
        self.controller_port: int | None = None
        self.tls = tls
        self.tls_port: int | None = None
        self.jars = jars
        self.startup_timeout_s = startup_timeout_s
        self.version = KAFKA_VERSION
        self._pick_ports = port is None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self.scram_users = dict(scram_users) if scram_users is not None else None
        self.admin_password = uuid.uuid4().hex
        if authorizer and scram_users is None:
            raise ValueError("ACLs need authenticated users: give scram_users too")
        self.authorizer = authorizer
        if self.scram_users is not None:
            bad = [name for name, password in self.scram_users.items() if set(",[]=\"") & set(name + password)]
            if bad:
                raise ValueError(f"SCRAM user(s) {bad}: names and passwords may not contain , [ ] = or quotes")
            self.scram_users.setdefault("admin", self.admin_password)
            self.admin_password = self.scram_users["admin"]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def tls_bootstrap(self) -> str:
        if self.tls is None:
            raise ValueError("this broker has no TLS listener: give tls=KafkaTls(...)")
        return f"127.0.0.1:{self.tls_port}"

    @property
    def tls_security_protocol(self) -> str:
        return "SSL" if self.scram_users is None else "SASL_SSL"

    @property
    def log_path(self) -> Path:
        return self.workdir / "kafka.log"

    @property
    def security_protocol(self) -> str:
        return "PLAINTEXT" if self.scram_users is None else "SASL_PLAINTEXT"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> "KafkaBroker":
        jars = self.jars = self.jars or resolve_kafka_jars()
        self.version = _jar_version(jars)
        java = _tool("java", "apt-get install openjdk-17-jre-headless")
        self.workdir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        # Ports picked here may be taken by someone else before Java binds them; then try fresh ones.
        for attempt in range(3 if self._pick_ports else 1):
            if self.controller_port is None or attempt > 0:
                self._choose_ports()
            try:
                self._launch(java, jars)
                break
            except ServiceUnavailable as exc:
                if "Address already in use" not in str(exc) or attempt == 2 or not self._pick_ports:
                    raise
        message = (f"Kafka {self.version} broker started (KRaft) at {self.bootstrap} "
                   f"in {time.monotonic() - began:.1f} s (pid {self.pid}, log {self.log_path})")
        log.info(message)
        print(message, file=sys.stderr, flush=True)
        return self

    def _choose_ports(self) -> None:
        """New ports mean new storage: the controller's own address is recorded in its metadata log."""
        if self._pick_ports:
            self.port = free_loopback_port()
        taken = {self.port}
        while (controller_port := free_loopback_port()) in taken:
            pass
        self.controller_port = controller_port
        taken.add(controller_port)
        if self.tls is not None:
            while (tls_port := free_loopback_port()) in taken:
                pass
            self.tls_port = tls_port
        shutil.rmtree(self.workdir / "data", ignore_errors=True)

    def _write_config(self) -> Path:
        data = self.workdir / "data"
        listeners = [f"{self.security_protocol}://127.0.0.1:{self.port}",
                     f"CONTROLLER://127.0.0.1:{self.controller_port}"]
        protocols = [f"{self.security_protocol}:{self.security_protocol}", "CONTROLLER:PLAINTEXT"]
        if self.tls is not None:
            listeners.append(f"EXTERNAL://127.0.0.1:{self.tls_port}")
            protocols.append(f"EXTERNAL:{self.tls_security_protocol}")
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # 4.x dynamic quorum: the voter set is written by `format --standalone`, not listed here.
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": ",".join(listeners),
            "advertised.listeners": ",".join(listeners),
            "listener.security.protocol.map": ",".join(protocols),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": self.security_protocol,
            "log.dirs": str(data),
            "num.partitions": "3",
            "auto.create.topics.enable": "true",
            # One node: every internal topic must make do with one replica, or it is never created.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Fewer internal partitions and no join delay: consumer groups are ready in a test's time.
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        if self.scram_users is not None:
            login = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                     f'username="admin" password="{self.admin_password}";')
            settings.update({
                "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256",
                "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
                # Each enabled mechanism needs its login entry, even one the broker never uses itself.
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": login,
                "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": login,
            })
            if self.tls is not None:
                settings.update({"listener.name.external.scram-sha-512.sasl.jaas.config": login,
                                 "listener.name.external.scram-sha-256.sasl.jaas.config": login})
        if self.tls is not None:
            settings.update({"listener.name.external.ssl.keystore.type": "PEM",
                             "listener.name.external.ssl.keystore.location": str(self._pem_keystore())})
        if self.authorizer:
            settings.update({"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                             "super.users": "User:admin;User:ANONYMOUS"})
        path = self.workdir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        return path

    def _pem_keystore(self) -> Path:
        """What `cat kafka.key kafka.crt > kafka.pem` makes: the key, then the certificate chain."""
        assert self.tls is not None
        path = self.workdir / "kafka.pem"
        path.touch(mode=0o600)
        path.write_text(self.tls.key.read_text().rstrip("\n") + "\n" + self.tls.cert.read_text())
        return path

    def _launch(self, java: str, jars: Path) -> None:
        config = self._write_config()
        classpath = str(jars / "*")  # expanded by Java itself, not by a shell
        # Timestamps in the log; slf4j-simple is the logging backend the pom puts on the classpath.
        jvm = [java, "-Xmx512m", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
               "-Dorg.slf4j.simpleLogger.showDateTime=true",
               "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss.SSS", "-cp", classpath]
        with open(self.log_path, "ab") as log_file:
            self._log_offset = log_file.tell()
            if not (self.workdir / "data" / "meta.properties").exists():
                cluster_id = _cluster_id()
                formatted = subprocess.run(
                    [*jvm, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
                     "-c", str(config), *self._scram_arguments()], stdout=log_file, stderr=subprocess.STDOUT,
                    timeout=120)
                if formatted.returncode != 0:
                    raise ServiceUnavailable(f"formatting Kafka storage failed\n{self._log_tail()}")
            self._process = subprocess.Popen(
                [*self._die_with_parent(), *jvm, "kafka.Kafka", str(config)],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _live.add(self)
        try:
            wait_until(self._ready, timeout_s=self.startup_timeout_s, interval_s=0.1,
                       what=f"Kafka on {self.bootstrap}")
        except (TimeoutError, ServiceUnavailable) as exc:
            self.stop()
            raise ServiceUnavailable(f"Kafka broker did not start: {exc}\n{self._log_tail()}") from exc

    def _scram_arguments(self) -> list[str]:
        arguments = []
        for name, password in (self.scram_users or {}).items():
            for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
                arguments += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        return arguments

    @staticmethod
    def _die_with_parent() -> list[str]:
        # atexit does not run when the test runner is SIGKILLed or times out; the kernel's parent-death
        # signal still ends the JVM then. It follows the creating thread, so only use it from the main one.
        setpriv = shutil.which("setpriv")
        if setpriv and sys.platform == "linux" and threading.current_thread() is threading.main_thread():
            return [setpriv, "--pdeathsig", "TERM", "--"]
        return []

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise ServiceUnavailable(f"the Kafka JVM exited with status {self._process.returncode}")
        # The line comes after the broker is unfenced by its own controller, i.e. it can serve requests.
        with open(self.log_path, "rb") as log_file:
            log_file.seek(self._log_offset)
            started = _STARTED_LINE.encode() in log_file.read()
        return started and port_accepts(self.port or 0)

    def _log_tail(self, lines: int = 40) -> str:
        """The last lines, and first the errors: a failed start ends in pages of shutdown noise."""
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(self._log_offset)
                text = log_file.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [line for line in text if " ERROR " in line or line.startswith("Caused by:")]
        first_errors = "first errors:\n" + "\n".join(errors[:8]) + "\n" if errors else ""
        return f"{first_errors}last {lines} lines of {self.log_path}:\n" + "\n".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM for a clean shutdown (the data stays in workdir), SIGKILL if that takes over 20 s."""
        process, self._process = self._process, None
        _live.discard(self)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            log.warning("Kafka broker pid %d ignored SIGTERM for 20 s; killing it", process.pid)
            process.kill()
            process.wait()

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_live: set[KafkaBroker] = set()


@atexit.register
def _stop_leftover_brokers() -> None:
    for broker in list(_live):
        broker.stop()


def _cluster_id() -> str:
    """Kafka's form of a random UUID (base64url, unpadded), never starting with '-': the storage tool's
    argument parser would read such an id as an option and fail, about one start in 64."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
