"""A read buffer under paho's socket: one ``recv`` per burst instead of three per packet.

paho reads each MQTT packet with a ``recv(1)`` for its type, one ``recv(1)``
per length byte and one for the rest, and aiomqtt's socket callback reads one
packet per wake of the event loop. With :class:`ReadBuffer` in place of the
socket, ``recv`` is served from a user-space buffer that one real ``recv`` of
up to :data:`CHUNK` bytes fills, and ``pending()`` (which aiomqtt's callback
already polls, for TLS) makes that callback go on reading packets until the
buffer is empty: one wake and one system call per burst of messages.
Everything else (``send``, ``fileno``, ``close``...) goes to the socket.
"""

from __future__ import annotations

from typing import Any

#: Bytes read from the socket at once.
CHUNK = 256 * 1024


class ReadBuffer:
    """Wraps a (non-blocking, possibly TLS) socket; only ``recv`` and ``pending`` differ."""

    __slots__ = ("_buf", "_inner_pending", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        # A TLS socket's decoded bytes; looked up once (it is polled after every packet).
        self._inner_pending = getattr(sock, "pending", None)

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes: buffered ones first, else one ``recv`` of the socket
        (which raises ``BlockingIOError`` when nothing is there, and returns ``b""`` at
        the end of the stream, as the socket's own would)."""
        if self._pos >= len(self._buf):
            data = self._sock.recv(max(bufsize, CHUNK))
            if len(data) <= bufsize:
                self._buf, self._pos = b"", 0
                return data  # type: ignore[no-any-return]
            self._buf, self._pos = data, 0
        end = self._pos + bufsize
        out = self._buf[self._pos : end]
        self._pos = min(end, len(self._buf))
        return out

    def pending(self) -> int:
        """Bytes readable without waiting: buffered here, and decoded by TLS."""
        inner = self._inner_pending() if self._inner_pending is not None else 0
        return len(self._buf) - self._pos + int(inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
