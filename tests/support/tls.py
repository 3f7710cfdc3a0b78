"""Throwaway PKI for loopback test servers: one CA, server certificates it signs, and a JWT signing pair.

Registries and the token server in tests speak real TLS, verified against a CA file the test hands to
the client (and to trivy), exactly as an operator would with GATE_REGISTRY_CA. Keys are EC P-256 for TLS
(fast to generate) and RSA 2048 for the token signer, because distribution 2.8 verifies RS256 tokens.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["ClientCert", "SigningPair", "TlsFiles", "make_client_cert", "make_pki", "make_signing_pair"]

# Generous validity around "now": test machines with a skewed clock must still accept the certificates.
_BEFORE = datetime.timedelta(days=1)
_AFTER = datetime.timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a CA and of one server certificate (with its key) signed by it."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """An SSL context serving the server certificate (for Python test servers)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """An SSL context trusting only the test CA (for test-side HTTP clients)."""
        return ssl.create_default_context(cafile=str(self.ca_file))


@dataclass(frozen=True)
class SigningPair:
    """An RSA key and its self-signed certificate, for RS256 tokens with an x5c header."""

    key: rsa.RSAPrivateKey
    cert_file: Path  # the registry's auth.token.rootcertbundle
    x5c: str  # base64 (standard, padded) DER of the certificate, as the JWS x5c header carries it


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_key(key: CertificateIssuerPrivateKeyTypes, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def make_pki(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TlsFiles:
    """Write ca.pem, server.pem and server-key.pem in `directory`; the server cert covers `hosts`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = _now()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("gate test CA"))
        .issuer_name(_name("gate test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BEFORE)
        .not_valid_after(now + _AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BEFORE)
        .not_valid_after(now + _AFTER)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    # Kept beside ca.pem so make_client_cert can issue client certificates from the same CA.
    _write_key(ca_key, directory / "ca-key.pem")
    files.cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, files.key_file)
    return files


def make_signing_pair(directory: Path) -> SigningPair:
    """An RSA key and a self-signed certificate for it, written as token-signer.pem in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = _now()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("gate test token signer"))
        .issuer_name(_name("gate test token signer"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BEFORE)
        .not_valid_after(now + _AFTER)
        # The registry verifies x5c against rootcertbundle as a chain; a self-signed CA cert is its own root.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / "token-signer.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    return SigningPair(key=key, cert_file=cert_file, x5c=x5c)


@dataclass(frozen=True)
class ClientCert:
    """A client certificate (for mTLS) and its key, PEM files."""

    cert_file: Path
    key_file: Path


def make_client_cert(files: TlsFiles, common_name: str, directory: Path | None = None) -> ClientCert:
    """Issue a client certificate with subject CN `common_name` from the CA of `make_pki`."""
    directory = directory or files.ca_file.parent
    ca_cert = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key((files.ca_file.parent / "ca-key.pem").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BEFORE)
        .not_valid_after(now + _AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    out = ClientCert(directory / f"client-{common_name}.pem", directory / f"client-{common_name}-key.pem")
    out.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, out.key_file)
    return out
