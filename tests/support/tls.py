"""Throw-away certificates for TLS tests, made with the openssl command line tool.

Every certificate is an EC P-256 key in PEM (PKCS#8), valid for two days, for 127.0.0.1 only.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


@dataclass(frozen=True)
class Issued:
    """A key and the certificate a CA issued for it."""

    key: Path
    cert: Path

    def combined(self) -> Path:
        """Key and certificate in one PEM file (what ZooKeeper's PEM key store reads)."""
        path = self.key.with_suffix(".pem")
        path.write_text(self.key.read_text() + self.cert.read_text())
        return path


@dataclass(frozen=True)
class CA:
    """A self-signed certificate authority in ``directory``."""

    directory: Path
    name: str

    @property
    def key(self) -> Path:
        return self.directory / f"{self.name}.key"

    @property
    def cert(self) -> Path:
        return self.directory / f"{self.name}.crt"

    @classmethod
    def create(cls, directory: Path, name: str) -> CA:
        ca = cls(directory, name)
        _openssl(
            *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(ca.key), "-out", str(ca.cert), "-days", "2", "-subj", f"/CN={name}"),
        )
        return ca

    def issue(self, name: str) -> Issued:
        """A certificate for ``name``, usable by a server on 127.0.0.1 and by a client."""
        key, csr, cert = (self.directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        ext = self.directory / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
        _openssl(
            *("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}"),
        )
        _openssl(
            *("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key)),
            *("-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)),
        )
        return Issued(key, cert)
