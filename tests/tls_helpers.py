"""Throwaway certificate authorities and certificates for the TLS tests, made with the openssl command line."""

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import missing

# `req -x509` would otherwise add the extensions of the system's openssl.cnf, which differ between machines.
_CA_CONFIG = """\
[req]
distinguished_name = dn
x509_extensions = ca
prompt = no
[dn]
CN = {name}
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        missing("the openssl command is needed to make the test certificates (Debian: apt-get install openssl)")
    return path


def _run(*args: str, cwd: Path) -> None:
    result = subprocess.run([_openssl(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"openssl {' '.join(args)} failed:\n{result.stderr}"


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ThrowawayCa:
    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: Path, name: str) -> "ThrowawayCa":
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / f"{name}.cnf"
        config.write_text(_CA_CONFIG.format(name=name))
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "2", "-config", str(config), cwd=directory)
        return cls(cert, key)

    def issue(self, name: str, *, client: bool = False, names: str = "IP:127.0.0.1, DNS:localhost") -> Issued:
        """A certificate for the hosts in `names` (a server; subjectAltName syntax) or for a client named `name`."""
        directory = self.cert.parent
        key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
        extensions = directory / f"{name}.ext"
        extensions.write_text("basicConstraints = CA:FALSE\n" + (
            "extendedKeyUsage = clientAuth\n" if client else
            f"extendedKeyUsage = serverAuth\nsubjectAltName = {names}\n"))
        _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}", cwd=directory)
        _run("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key), "-CAcreateserial",
             "-days", "2", "-extfile", str(extensions), "-out", str(cert), cwd=directory)
        return Issued(cert, key)
