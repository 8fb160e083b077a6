"""Run the province server: ``python -m province_server`` with ``examples/`` on ``sys.path``.

    export TCS_SERVER_SESSION_KEY=$(openssl rand -hex 32)
    export TCS_ADMIN_PASSWORD='a long password'      # first start: creates the admin
    cd examples && python -m province_server --db ../tcs.sqlite --port 8080 --scheduler

``--scheduler`` also runs the scheduler in the same process: devices whose transport is
``simulated`` are served by an in-memory transport; any other transport name is looked up in
the ``tcs_core.transports`` entry points (``board``, ``sip``, ``sms``) and built with its
defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from tcs_core import Settings, SourceSystem, TcsError
from tcs_core.memory import MemoryTransport
from tcs_core.scheduler import RealClock, Scheduler
from tcs_core.transport import load_transport_factory

from .config import ServerConfig
from .server import create_app, serve

log = logging.getLogger("province_server")


def _transports(system: SourceSystem) -> list[Any]:
    names = sorted({d.transport for d in system.devices.all() if d.active} | {"simulated"})
    out: list[Any] = []
    for name in names:
        if name in ("simulated", "memory"):
            out.append(MemoryTransport(name))
            continue
        try:
            out.append(load_transport_factory(name)())
        except (TcsError, TypeError) as exc:
            log.warning("transport %s not started: %s", name, exc)
    return out


async def run(args: argparse.Namespace) -> None:
    """Serve until interrupted."""
    config = ServerConfig.from_file(args.config) if args.config else ServerConfig.from_env()
    settings = Settings.in_memory() if args.memory else Settings.sqlite(args.db)
    system = SourceSystem(settings)
    scheduler = Scheduler(system, _transports(system), RealClock()) if args.scheduler else None
    app = create_app(system, config=config, scheduler=scheduler, start_scheduler=True)
    host = args.host or config.host
    port = args.port if args.port is not None else config.port
    runner, bound = await serve(app, host, port)
    print(
        f"tcs province server: http://{host}:{bound}/  (dashboard, API under /api/v1, "
        f"OpenAPI at /openapi.json)",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        system.close()


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    p = argparse.ArgumentParser(
        prog="python -m province_server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--db", default="tcs.sqlite", help="SQLite event store (default tcs.sqlite)")
    p.add_argument("--memory", action="store_true", help="in-memory store (nothing kept)")
    p.add_argument("--config", help="a TOML file with a [server] table")
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--scheduler", action="store_true", help="run the scheduler here too")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(run(args))
    except TcsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
