"""A slow network link in front of a local server: a TCP proxy that delays and throttles what passes.

    with SlowLink(("127.0.0.1", moto_port), upload_bytes_per_s=500_000, latency_s=0.05) as link:
        os.environ["R1OV_S3_ENDPOINT"] = link.url   # S3 clients now see a far, slow bucket

Bytes sent by the client (an upload) pass at ``upload_bytes_per_s`` at most, and each chunk waits
``latency_s`` before it is forwarded, as over a long, narrow link to an object store; the answers
come back at full speed. Used against moto's S3 server to show that training does not wait for a
slow bucket.

Not modelled: packet loss, congestion control, TLS, bandwidth shared across connections (each
connection gets the full rate), and the server's own throttling (S3's 503 SlowDown).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

CHUNK = 16 * 1024


class SlowLink:
    """A TCP proxy on 127.0.0.1 to ``upstream``; see the module docstring."""

    def __init__(self, upstream: tuple[str, int], upload_bytes_per_s: float, latency_s: float = 0.0) -> None:
        self.upstream = upstream
        self.rate = upload_bytes_per_s
        self.latency_s = latency_s
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> SlowLink:
        threading.Thread(target=self._accept, daemon=True, name="slow-link").start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, dest: socket.socket, slow: bool) -> None:
        try:
            while data := source.recv(CHUNK):
                if slow:
                    time.sleep(self.latency_s + len(data) / self.rate)
                dest.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dest.shutdown(socket.SHUT_WR)
