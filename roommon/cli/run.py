"""``roommon run``: the daemon, until SIGINT/SIGTERM.

Exit: 0 stopped by a signal, 1 the daemon failed (its reason is printed and
published as its offline status), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from roommon.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, load_or_report, run_until_signal


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the daemon",
        description="Run the monitoring daemon until SIGINT or SIGTERM. Exit 0 stopped, "
        "1 the daemon failed (reason printed and in its offline status), 2 bad usage or config.",
    )
    p.add_argument("--config", "-c", required=True, help="daemon config file (TOML)")
    p.add_argument(
        "--broker",
        help="mqtt[s]://HOST[:PORT] instead of the config's broker (credentials still from "
        "the config's environment variables)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log level written (default info)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_or_report(args.config, sys.stderr, preflight=True)
    if config is None:
        return EXIT_USAGE
    from roommon.cli.ops import metrics_output, operations
    from roommon.core.clock import RealClock
    from roommon.core.errors import DaemonFailedError, StoreOpenError
    from roommon.core.logs import configure
    from roommon.room.pipeline import RoomOutput
    from roommon.runtime.daemon import Daemon
    from roommon.runtime.hl7_output import Hl7Output
    from roommon.transports.broker import BrokerEndpoint

    broker = BrokerEndpoint.from_config(config.broker, url=args.broker)  # UsageError: exit 2
    clock = RealClock()
    configure(clock=clock, level=args.log_level)

    async def main(stop: asyncio.Event) -> int:
        async with contextlib.AsyncExitStack() as stack:
            metrics = metrics_output(config)  # /metrics and /healthz, when [metrics] enables them
            extra: list[RoomOutput] = [] if metrics is None else [metrics]
            hl7 = None
            if config.hl7 is not None:  # HL7 out (docs/hl7.md): entered first, left last
                hl7 = await stack.enter_async_context(Hl7Output(config=config, clock=clock))
                extra.append(hl7)
            daemon = await stack.enter_async_context(
                Daemon(config=config, clock=clock, broker=broker, extra_outputs=extra)
            )
            if hl7 is not None:
                hl7.attach(daemon.pipelines)
            await stack.enter_async_context(operations(daemon, metrics))  # then READY=1
            await stop.wait()
        return EXIT_OK

    try:
        return run_until_signal(main)
    except StoreOpenError as err:  # an installation problem, like a bad config: exit 2
        print(f"roommon run: {err}", file=sys.stderr)
        return EXIT_USAGE
    except DaemonFailedError as err:
        print(f"roommon run: the daemon failed: {err}", file=sys.stderr)
        return EXIT_FAILURE
