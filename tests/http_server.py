"""Throwaway servers on 127.0.0.1 for download tests: a folder over HTTP, or hostile replies."""

from __future__ import annotations

import contextlib
import functools
import http.server
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def _running(server: socketserver.TCPServer) -> Iterator[str]:
    """Serve in a thread; yields the base URL (``http://127.0.0.1:PORT``)."""
    server.daemon_threads = True  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(directory: Path) -> contextlib.AbstractContextManager[str]:
    """Serve the files of ``directory``."""
    handler = functools.partial(_Quiet, directory=str(directory))
    return _running(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler))


def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@contextlib.contextmanager
def raw_server(reply: bytes | Callable | None = None) -> Iterator[str]:
    """Answers each request with ``reply`` (bytes) or ``reply(conn, stop)``, or else trickles (a
    Content-Length of 100000, then a byte every 50 ms); ``stop`` is set when the block ends."""
    stop = threading.Event()

    def trickle(conn, stop) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while not stop.wait(0.05):
            conn.sendall(b"x")

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(2)
            with contextlib.suppress(OSError):  # the client hung up: expected here
                self.request.recv(65536)
                if isinstance(reply, bytes):
                    self.request.sendall(reply)
                else:
                    (reply or trickle)(self.request, stop)

    with _running(socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)) as url:
        try:
            yield url
        finally:
            stop.set()
