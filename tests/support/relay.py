"""A TCP relay on 127.0.0.1 that records every byte it forwards (a wire tap for tests)."""

from __future__ import annotations

import contextlib
import socket
import threading


class RecordingRelay:
    """Listens on a free loopback port and forwards each connection to ``target_port``.

    ``captured()`` returns every byte seen in either direction so far.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._chunks: list[bytes] = []
        self._closed = False
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def captured(self) -> bytes:
        """Return all bytes forwarded so far, both directions."""
        with self._lock:
            return b"".join(self._chunks)

    def close(self) -> None:
        """Stop accepting (open connections end with their peers)."""
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                inbound, _ = self._listener.accept()
            except OSError:
                return
            outbound = socket.create_connection(("127.0.0.1", self.target_port))
            for src, dst in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    self._chunks.append(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
