"""HTTPS for the sandbox services: a throwaway local CA and server certificate, and a WSGI server that speaks TLS.

Some clients refuse plain http — msal, for one, only accepts an ``https://`` authority — so the stand-ins can be
served over TLS with a certificate for 127.0.0.1/localhost signed by a CA generated on the spot. Clients trust that
CA by path (``verify=<ca_cert>`` for requests/msal and httpx); nothing is installed system-wide.

    files = make_local_ca(tmp_dir)
    with serve_wsgi(app, tls=files) as url:        # https://127.0.0.1:<port>
        httpx.get(url + "/...", verify=str(files.ca_cert))
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from senseimig_dagster.sandbox.http_server import KeepAliveRequestHandler, ThreadingWSGIServer, run_in_thread

HANDSHAKE_TIMEOUT = 10.0


@dataclass(frozen=True)
class TLSFiles:
    """PEM files: the CA certificate clients trust, and the server's certificate chain and private key."""

    ca_cert: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "senseimig sandbox"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_local_ca(directory: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost", "::1"),
                  days: int = 30) -> TLSFiles:
    """Write a fresh CA (``ca.pem``) and a server certificate for ``hosts`` (``server.pem``, ``server-key.pem``)
    into ``directory``. The CA's private key is never written: nothing else can be signed with it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("senseimig sandbox local CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0] if hosts else "localhost")).issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=True, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    files = TLSFiles(ca_cert=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server-key.pem")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.touch(mode=0o600)
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


class _TLSRequestHandler(KeepAliveRequestHandler):
    def setup(self) -> None:
        # The handshake runs here, in the connection's own thread, so a slow or plain-http client cannot stall
        # the accept loop.
        self.request.settimeout(HANDSHAKE_TIMEOUT)
        self.request.do_handshake()
        super().setup()


class _TLSServer(ThreadingWSGIServer):
    def __init__(self, address: tuple[str, int], context: ssl.SSLContext):
        self._context = context
        super().__init__(address)
        self.RequestHandlerClass = _TLSRequestHandler

    def setup_environ(self) -> None:
        super().setup_environ()
        self.base_environ["HTTPS"] = "on"  # wsgiref derives wsgi.url_scheme from it

    def get_request(self):  # type: ignore[override]
        sock, addr = super().get_request()
        return self._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


@contextmanager
def serve_wsgi(app: Callable, host: str = "127.0.0.1", port: int = 0, tls: TLSFiles | None = None,
               name: str = "sandbox-wsgi") -> Iterator[str]:
    """Serve a WSGI ``app`` on ``host:port`` (0 = a free port) in a background thread, over TLS when ``tls`` is
    given; yields the base URL (``https://...`` or ``http://...``). Threaded, HTTP/1.1 keep-alive."""
    server = _TLSServer((host, port), tls.server_context()) if tls else ThreadingWSGIServer((host, port))
    with run_in_thread(server, app, name, "https" if tls else "http") as url:
        yield url
