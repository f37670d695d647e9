"""A simulated device's serial line: bytes to a real port or to a pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import struct
import termios
import tty
from typing import Final

import serial

from roommon.core.clock import Clock
from roommon.core.errors import RoommonError
from simulators.serial_devices import (
    write_all,
)


class DeviceLineError(RoommonError):
    """The device line cannot go on (the port cannot be opened, closed, or was unplugged)."""


READER_SETTLE_S: Final = 0.1
#: How often the presence of a pty reader is looked at while waiting for one.
READER_POLL_S: Final = 0.05


class DeviceLine:
    """The device end of a serial link: a pty master, or a real port opened with pyserial.

    Writes wait while the line is full, as a receiver reading slowly holds
    back a UART's buffer; an error on the line (the port unplugged or closed)
    is a :class:`DeviceLineError`. On a pty the run starts once a reader has
    opened the slave end; while no reader has it open the device goes on at
    its pace and its frames are lost (counted), as on a cable with nothing at
    the other end.
    """

    def __init__(self, *, fd: int, name: str, port: serial.Serial | None = None) -> None:
        self.fd = fd
        self.name = name
        self._port = port
        self._poll: select.poll | None = None
        if port is None:
            self._poll = select.poll()
            self._poll.register(fd, select.POLLOUT)

    @classmethod
    def open_pty(cls) -> DeviceLine:
        master, slave = os.openpty()
        tty.setraw(slave)
        name = os.ttyname(slave)
        # Not kept open: the master then shows POLLHUP exactly while nobody has
        # the slave open, which is how a reader is noticed.
        os.close(slave)
        return cls(fd=master, name=name)

    @classmethod
    def open_port(cls, path: str, *, baudrate: int) -> DeviceLine:
        try:
            port = serial.Serial(port=path, baudrate=baudrate, timeout=0, exclusive=True)
        except (OSError, serial.SerialException, ValueError) as exc:
            raise DeviceLineError(f"cannot open serial port {path}: {exc}") from exc
        return cls(fd=port.fileno(), name=path, port=port)

    def reader_attached(self) -> bool:
        """Whether a receiver has the line open (a real port: always assumed)."""
        if self._poll is None:
            return True
        return not any(ev & select.POLLHUP for _, ev in self._poll.poll(0))

    async def wait_for_reader(self, clock: Clock) -> None:
        while not self.reader_attached():
            await clock.sleep(READER_POLL_S)
        await clock.sleep(READER_SETTLE_S)

    async def write(self, data: bytes) -> bool:
        """Write every byte; False when a pty had no reader (the rest of ``data`` is lost)."""
        try:
            if self._port is not None:
                await write_all(self.fd, data)
                return True
            return await self._write_pty(data)
        except OSError as exc:
            raise DeviceLineError(
                f"serial port {self.name} closed or unplugged ({exc.strerror or exc})"
            ) from exc

    async def _write_pty(self, data: bytes) -> bool:
        # Not write_all: a reader that leaves while the queue is full leaves the
        # master hung up but never writable, and epoll reports the hang-up as
        # "writable" over and over; each wake-up must look at the reader first.
        os.set_blocking(self.fd, False)
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            if not self.reader_attached():
                return False
            try:
                view = view[os.write(self.fd, view) :]
                continue
            except BlockingIOError:
                pass
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_writer(self.fd, _set_done, ready)
            try:
                await ready
            finally:
                loop.remove_writer(self.fd)
        return True

    async def drain(self, *, clock: Clock, linger_s: float = 5.0) -> int:
        """Before closing: let the reader take what was written; the bytes left unread."""
        if self._port is not None:
            try:
                await asyncio.to_thread(self._port.flush)
            except (OSError, termios.error, serial.SerialException) as exc:
                raise DeviceLineError(
                    f"serial port {self.name} closed or unplugged ({exc})"
                ) from exc
            return 0
        if not self.reader_attached():
            return 0
        # A second descriptor on the slave to see the reader's queue; opening a
        # pty slave without pyserial flushes nothing.
        probe = os.open(self.name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            deadline = clock.monotonic() + linger_s
            quiet = 0
            # Written bytes reach the reader's queue a moment after write() returns,
            # so one empty reading is not proof: ask for two in a row.
            while quiet < 2 and clock.monotonic() < deadline:
                quiet = quiet + 1 if _unread(probe) == 0 else 0
                await clock.sleep(0.02)
            return _unread(probe)
        finally:
            os.close(probe)

    def close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                self._port.close()
        else:
            with contextlib.suppress(OSError):
                os.close(self.fd)


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _unread(fd: int) -> int:
    raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", raw)[0])
