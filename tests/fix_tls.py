"""Certificates for TLS tests, made with ``cryptography``: a CA, a server certificate for
``localhost`` / ``127.0.0.1``, client certificates whose CN is a user name, and a second,
unrelated CA (a client that trusts it must fail to verify the server).

Fixture: ``tls_certs`` (session) -> :class:`Certs`.  The files are owned by the
``postgres`` OS user when the tests run as root, keys mode 0600, so a PostgreSQL 15
cluster (which insists on that) can use them directly.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pgbundle tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Certs:
    """Paths of the test PKI: ``ca`` (root), ``server_cert``/``server_key`` (localhost,
    127.0.0.1), ``other_ca`` (a root that signed nothing here), :meth:`client` pairs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        now = datetime.datetime.now(datetime.timezone.utc)
        self._now = now
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        self._ca_cert = self._sign(_name("pgbundle test CA"), self._ca_key.public_key(), ca=True)
        self.ca = self._write("ca.crt", self._ca_cert)
        other_key = ec.generate_private_key(ec.SECP256R1())
        other = (x509.CertificateBuilder().subject_name(_name("unrelated CA")).issuer_name(_name("unrelated CA"))
                 .public_key(other_key.public_key()).serial_number(x509.random_serial_number())
                 .not_valid_before(now - datetime.timedelta(days=1))
                 .not_valid_after(now + datetime.timedelta(days=30))
                 .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                 .sign(other_key, hashes.SHA256()))
        self.other_ca = self._write("other-ca.crt", other)
        self.server_cert, self.server_key = self.issue("server", "localhost", server=True)
        self._clients: dict[str, tuple[str, str]] = {}

    def _sign(self, subject: x509.Name, public_key, *, ca: bool = False, server: bool = False,  # type: ignore[no-untyped-def]
              sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(_name("pgbundle test CA"))
             .public_key(public_key).serial_number(x509.random_serial_number())
             .not_valid_before(self._now - datetime.timedelta(days=1))
             .not_valid_after(self._now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if not ca:
            usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return b.sign(self._ca_key, hashes.SHA256())

    def _write(self, name: str, cert: x509.Certificate) -> str:
        path = self.root / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._own(path, 0o644)
        return str(path)

    def _own(self, path: Path, mode: int) -> None:
        os.chmod(path, mode)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def issue(self, name: str, cn: str, *, server: bool = False) -> tuple[str, str]:
        """A new key and certificate (files ``name.crt`` / ``name.key``) signed by the CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] | None = None
        if server:
            sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = self._sign(_name(cn), key.public_key(), server=server, sans=sans)
        crt = self._write(f"{name}.crt", cert)
        kpath = self.root / f"{name}.key"
        kpath.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
        self._own(kpath, 0o600)
        return crt, str(kpath)

    def client(self, user: str) -> tuple[str, str]:
        """(cert, key) of a client certificate whose CN is ``user``."""
        if user not in self._clients:
            self._clients[user] = self.issue(f"client-{user}", user)
        return self._clients[user]


@pytest.fixture(scope="session")
def tls_certs() -> Iterator[Certs]:
    root = Path(tempfile.mkdtemp(prefix="pgbundle-tls-"))
    os.chmod(root, 0o755)
    try:
        yield Certs(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
