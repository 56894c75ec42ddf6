"""A throwaway HTTP server on 127.0.0.1 serving a directory (for download tests)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory``; yields the base URL (``http://127.0.0.1:PORT``)."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def raw_server(reply, *, max_seconds: float = 20.0) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that answers every connection with ``reply(conn, stop)``
    (after reading the request); yields its base URL. Each connection is closed after the
    reply, and the server stops (``stop`` is set) when the block ends or after
    ``max_seconds``."""
    import socket

    stop = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)

    def handle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(65536)
                reply(conn, stop)
            except OSError:
                pass  # the client hung up: expected for the hostile servers

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    timer = threading.Timer(max_seconds, stop.set)
    timer.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        timer.cancel()
        thread.join(5)
        listener.close()


def garbage(conn, stop) -> None:
    """Not HTTP at all."""
    conn.sendall(b"\x00\x01SSH-2.0-not-http garbage\r\n\r\n")


def chunked_cut_short(conn, stop) -> None:
    """A chunked response announcing 1 KiB that stops after 100 bytes."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"x" * 100)


def length_cut_short(conn, stop) -> None:
    """Content-Length 5000, then 100 bytes and a hang-up."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 100)


def trickle(conn, stop) -> None:
    """Content-Length 100000, then one byte every 50 ms until stopped or hung up on."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    while not stop.wait(0.05):
        conn.sendall(b"x")


def status(code: int):
    """An HTTP error status with an empty body."""

    def reply(conn, stop) -> None:
        conn.sendall(
            f"HTTP/1.1 {code} Boom\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )

    return reply
