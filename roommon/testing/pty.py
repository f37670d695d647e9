"""A bedside device on a real pseudo-terminal, for serial tests."""

from __future__ import annotations

import contextlib
import os
import tty
from pathlib import Path


class Pty:
    """One raw pseudo-terminal: the test holds the master, the code under test opens ``path``."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)

    @classmethod
    def open(cls) -> Pty:
        return cls()

    @property
    def path(self) -> str:
        return os.ttyname(self.slave)

    def unplug(self) -> None:
        """Close the master: reads on the slave fail with EIO, as when a cable is pulled."""
        if self.master >= 0:
            os.close(self.master)
        self.master = -1

    def close(self) -> None:
        for fd in (self.master, self.slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = -1


class PtyDevice:
    """A bedside device on a real pseudo-terminal, reached through a by-id style symlink.

    The simulator writes to the master end; the daemon opens ``link``, which
    points at the slave. :meth:`unplug` closes the master (reads on the slave
    then fail with EIO, as when a USB adapter is pulled); :meth:`replug` makes
    a new pty and swaps the link atomically, as udev does when it comes back.
    """

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = self.slave = -1
        self._old: list[int] = []
        self.replug()

    def replug(self) -> None:
        if self.slave >= 0:
            self._old.append(self.slave)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(self.slave))
        tmp.replace(self.link)

    def unplug(self) -> None:
        os.close(self.master)
        self.master = -1

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view) :]

    def close(self) -> None:
        for fd in (self.master, self.slave, *self._old):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = -1
        self._old.clear()
