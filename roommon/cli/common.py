"""Pieces the subcommands share: argparse number types, config loading that prints
the config's problems one per line, the broker to talk to (config or ``--broker``
URL), and the one signal handling of every long-running command.

``roommon run``, ``check-config``, ``simulate``, ``record`` and ``replay`` all
load a config the same way and report a bad one the same way (exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, TextIO

from roommon.core.errors import ConfigError, RoommonError, StoreOpenError, UsageError

if TYPE_CHECKING:
    import asyncio

    from roommon.config import Config
    from roommon.transports.broker import BrokerEndpoint

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2


def exit_status(err: RoommonError) -> int:
    """The one mapping from roommon's errors to exit codes: what the person asked for
    cannot be done as given (usage, configuration, a file that is not what it should
    be, a store that cannot be opened) is 2; anything that failed while running is 1."""
    from roommon.transports.mcap_files import RecordingError

    if isinstance(err, UsageError | ConfigError | RecordingError | StoreOpenError):
        return EXIT_USAGE
    return EXIT_FAILURE


def load_or_report(path: str, err: TextIO, *, preflight: bool = False) -> Config | None:
    """The validated config, or None after printing one line per problem to ``err``.

    ``preflight`` (``check-config``, ``run``): also the checks that need more
    than the file (:mod:`roommon.runtime.preflight`): alarm codes and profile
    patterns that match nothing, TLS files, credential variables.
    """
    from roommon.config import load_config

    try:
        config = load_config(path)
        if preflight:
            from roommon.runtime.preflight import preflight_problems

            problems = preflight_problems(config)
            if problems:
                raise ConfigError(path, problems)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=err)
        return None
    return config


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number")
    return value


def positive(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive number")
    return value


def non_negative(text: str) -> float:
    """argparse type: a finite number >= 0 (for ``--speed``: 0 means as fast as possible)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 0")
    return value


def broker_target(config: Config, url: str | None) -> BrokerEndpoint:
    """The config's broker, or ``--broker mqtt[s]://HOST[:PORT]`` (credentials still from
    the environment variables the config names); a malformed URL is a UsageError."""
    from roommon.transports.broker import BrokerEndpoint

    return BrokerEndpoint.from_config(config.broker, url=url)


def run_until_signal(main: Callable[[asyncio.Event], Coroutine[Any, Any, int]]) -> int:
    """Run ``main(stop)`` to completion; SIGINT and SIGTERM set ``stop``.

    The one signal handling of the CLI: a command ends its work when ``stop``
    is set (finishing a file, printing its summary) and returns its exit status.
    """

    import asyncio  # not at module level: commands that run no loop start faster

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    return asyncio.run(runner())


async def cancel_on_stop(work: Coroutine[Any, Any, int], stop: asyncio.Event) -> int:
    """Run ``work`` until it returns or ``stop`` is set (then cancel it: exit 0).

    For commands whose work ends by cancellation (it prints its summary on the
    way out), under :func:`run_until_signal`.
    """
    import asyncio

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(work, name="roommon-command")
        waiter = tg.create_task(stop.wait(), name="roommon-stop")
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        waiter.cancel()
    return EXIT_OK if task.cancelled() else task.result()
