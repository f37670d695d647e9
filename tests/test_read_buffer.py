"""The read buffer under paho's socket keeps a socket's recv semantics (real socket pair)."""

from __future__ import annotations

import socket

import pytest

from roommon.transports.read_buffer import ReadBuffer


def test_recv_is_served_from_one_read_and_keeps_socket_semantics() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.setblocking(False)
        buf = ReadBuffer(b)
        with pytest.raises(BlockingIOError):  # nothing there yet: as the socket says
            buf.recv(1)
        a.sendall(b"\x30\x05hello" * 3)
        assert buf.recv(1) == b"\x30"
        assert buf.pending() == 20  # the rest of the burst is buffered, no more recv needed
        assert buf.recv(1) == b"\x05"
        assert buf.recv(5) == b"hello"
        assert buf.recv(100) == b"\x30\x05hello\x30\x05hello"  # at most what is buffered
        assert buf.pending() == 0
        assert buf.fileno() == b.fileno()  # everything else is the socket's
        a.sendall(b"xy")
        assert buf.recv(10) == b"xy"
        a.close()
        assert buf.recv(1) == b""  # end of stream
