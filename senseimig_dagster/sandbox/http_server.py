"""A small threaded WSGI server with HTTP/1.1 keep-alive for the sandbox's stand-ins (Sensei, Entra, Dataverse).

``wsgiref``'s request handler serves one request per connection and answers HTTP/1.0; clients then pay a TCP
handshake per request. The handler below loops over requests on a connection (every response carries
Content-Length, so that is safe), turns on TCP_NODELAY (wsgiref writes status, headers and body separately) and
lets the app reset the connection for fault injection (``environ[ABORT_KEY]()``).
"""

from __future__ import annotations

import logging
import signal
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

log = logging.getLogger("senseimig.sandbox.http")

ABORT_KEY = "senseimig.abort"  # environ hook: the app calls it to reset the connection (fault injection)


class _ServerHandler(ServerHandler):
    http_version = "1.1"

    def log_exception(self, exc_info) -> None:  # type: ignore[override]
        log.error("error while serving %s", self.environ.get("PATH_INFO"), exc_info=exc_info)


class KeepAliveRequestHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections are closed after this many seconds

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.track(self.connection, False)  # type: ignore[attr-defined]
        with suppress(OSError):
            super().finish()

    def handle(self) -> None:
        self.close_connection = True
        self._one_request()
        while not self.close_connection:
            self._one_request()

    def _one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except OSError:  # idle timeout, or the client went away
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(414)
            self.close_connection = True
            return
        if not self.parse_request():
            return
        environ = self.get_environ()
        environ[ABORT_KEY] = self._abort
        try:
            length = max(int(self.headers.get("Content-Length") or 0), 0)
        except ValueError:
            self.send_error(400, "invalid Content-Length")
            self.close_connection = True
            return
        body = _Body(self.rfile, length)
        handler = _ServerHandler(body, self.wfile, self.get_stderr(), environ, multithread=True)
        handler.request_handler = self
        handler.run(self.server.get_app())
        # An app that answered without reading the body (a 401, a 429) must not leave it on a keep-alive
        # connection, where it would be parsed as the next request line.
        if not self.close_connection:
            try:
                body.drain()
            except OSError:
                self.close_connection = True

    def _abort(self) -> None:
        """Close with SO_LINGER 0, so the client sees a TCP reset rather than a clean end of stream."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Body:
    """``wsgi.input`` limited to this request's Content-Length, so what the app leaves unread can be drained."""

    def __init__(self, stream, length: int):
        self._stream, self._left = stream, length

    def read(self, size: int = -1) -> bytes:
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._stream.read(size) if size else b""
        self._left -= len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._stream.readline(size) if size else b""
        self._left -= len(data)
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")

    def drain(self) -> None:
        while self._left > 0 and self.read(min(self._left, 1 << 16)):
            pass


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int]):
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, KeepAliveRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse-DNS lookup (getfqdn), which can stall for seconds on some hosts.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
        self.setup_environ()

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._conn_lock:
            (self._connections.add if alive else self._connections.discard)(conn)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns, self._connections = list(self._connections), set()
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


@contextmanager
def run_in_thread(server: ThreadingWSGIServer, app: Callable, name: str, scheme: str = "http") -> Iterator[str]:
    """Serve ``app`` with ``server`` in a background thread; yields the base URL; stops cleanly, idle keep-alive
    connections included."""
    server.set_app(app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True)
    thread.start()
    host = server.server_address[0]
    netloc = f"[{host}]" if ":" in host else host
    try:
        yield f"{scheme}://{netloc}:{server.server_port}"
    finally:
        server.shutdown()
        server.close_connections()  # idle keep-alive connections would otherwise linger until their timeout
        server.server_close()
        thread.join()


def serve_until_stopped(banner: Sequence[str], stop: threading.Event | None = None) -> None:
    """The sandbox servers' foreground: print ``banner`` and block until Ctrl-C, SIGTERM (which ends as cleanly as
    Ctrl-C; handled only in the main thread) or ``stop``."""
    stop = stop or threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if in_main else None
    try:
        print("\n".join([*banner, "Ctrl-C to stop"]), flush=True)
        while not stop.wait(0.5):  # wakes for Ctrl-C too
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
