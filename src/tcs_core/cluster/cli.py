"""``tcs worker`` and ``tcs cluster status``: cluster mode on PostgreSQL.

The ``tcs`` command wires these in with two calls (as it does for ``tcs kpi``)::

    add_cluster_commands(commands, parents=[common], lang=out.lang, func=_cmd_cluster)

    def _cmd_cluster(out, args):
        return run_cluster_command(args, _settings(args), stdout=out.console.file)

Commands:

- ``tcs worker [--partitions P] [--lease-ttl S] [--renew S] [--transport NAME ...]
  [--worker-id ID] [--events FILE] [--speed X --clock-start ISO --clock-epoch UNIX]``: join the
  cluster and schedule the partitions this worker leases until SIGTERM / Ctrl-C;
- ``tcs cluster status [--format table|json]``: workers, partitions, lag behind the log.

Both read ``--config`` or the environment (``TCS_PERSISTENCE=postgres``, ``TCS_POSTGRES_DSN``,
``TCS_POSTGRES_SCHEMA``, …); there is one entry point, ``tcs`` (``python -m tcs_core.cli``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

from tcs_core.cluster.leases import ClusterConfig
from tcs_core.cluster.status import cluster_status, render_status
from tcs_core.config import Settings
from tcs_core.errors import TcsError, ValidationError
from tcs_core.i18n import message
from tcs_core.transport import Transport, load_transport_factory

__all__ = [
    "CLUSTER_MESSAGES",
    "add_cluster_commands",
    "run_cluster_command",
]

CLUSTER_MESSAGES: dict[str, dict[str, str]] = {
    "worker": {
        "vi": "chạy một tiến trình lập lịch của cụm (PostgreSQL): nhận phân vùng, phát, chuyển giao",
        "en": "run a cluster scheduler worker (PostgreSQL): lease partitions, fire, fail over",
    },
    "cluster": {
        "vi": "cụm bộ lập lịch trên PostgreSQL",
        "en": "the scheduler cluster on PostgreSQL",
    },
    "status": {
        "vi": "các tiến trình, chủ của từng phân vùng, độ trễ so với nhật ký sự kiện",
        "en": "workers, partition owners, lag behind the event log",
    },
    "opt.partitions": {
        "vi": "số phân vùng (mọi tiến trình phải dùng cùng một số)",
        "en": "number of partitions (every worker must use the same)",
    },
    "opt.ttl": {"vi": "thời hạn thuê phân vùng (giây)", "en": "lease time (seconds)"},
    "opt.renew": {"vi": "chu kỳ gia hạn (giây)", "en": "renewal period (seconds)"},
    "opt.transport": {
        "vi": "tên giao vận (lặp lại được; mặc định: memory)",
        "en": "transport name (repeatable; default: memory)",
    },
    "opt.worker_id": {"vi": "tên tiến trình trong cụm", "en": "this worker's id in the cluster"},
    "opt.events": {
        "vi": "ghi nhật ký sự kiện của tiến trình (JSON từng dòng) vào tệp",
        "en": "write the worker's events (JSON lines) to this file",
    },
    "opt.log_fires": {
        "vi": "ghi cả từng lượt phát vào --events (thử nghiệm; chậm)",
        "en": "also write every firing to --events (testing; slow)",
    },
    "opt.speed": {
        "vi": "đồng hồ tăng tốc: số giây mô phỏng mỗi giây thực (thử nghiệm)",
        "en": "accelerated clock: simulated seconds per wall second (testing)",
    },
    "opt.clock_start": {
        "vi": "thời điểm mô phỏng tại --clock-epoch (ISO 8601)",
        "en": "simulated instant at --clock-epoch (ISO 8601)",
    },
    "opt.clock_epoch": {
        "vi": "thời điểm thực (giây Unix) ứng với --clock-start",
        "en": "wall instant (Unix seconds) of --clock-start",
    },
    "opt.format": {"vi": "định dạng", "en": "output format"},
    "opt.lang": {"vi": "ngôn ngữ hiển thị (vi, en)", "en": "display language (vi, en)"},
    "needs_postgres": {
        "vi": "chế độ cụm cần PostgreSQL: đặt TCS_PERSISTENCE=postgres và TCS_POSTGRES_DSN, "
        'hoặc [persistence] kind = "postgres" trong tcs.toml',
        "en": "cluster mode needs PostgreSQL: set TCS_PERSISTENCE=postgres and TCS_POSTGRES_DSN, "
        'or [persistence] kind = "postgres" in tcs.toml',
    },
    "clock": {
        "vi": "--speed cần cả --clock-start và --clock-epoch",
        "en": "--speed needs both --clock-start and --clock-epoch",
    },
    "bad_instant": {
        "vi": "thời điểm không hợp lệ: {value!r} (ISO 8601 có múi giờ)",
        "en": "not an instant: {value!r} (ISO 8601 with a zone)",
    },
    "transport_failed": {
        "vi": "không tạo được giao vận {name!r} với cấu hình mặc định: {reason}",
        "en": "could not construct transport {name!r} with default settings: {reason}",
    },
    "no_psycopg": {
        "vi": "chế độ cụm cần gói psycopg: pip install 'tcs-core[postgres]'",
        "en": "cluster mode needs psycopg: pip install 'tcs-core[postgres]'",
    },
    "unreachable": {
        "vi": "không kết nối được PostgreSQL tại {where}: {reason}",
        "en": "cannot reach PostgreSQL at {where}: {reason}",
    },
    "joined": {
        "vi": "Tiến trình {id} đang tham gia cụm ({p} phân vùng, thuê {ttl:g} s); Ctrl-C để dừng",
        "en": "Worker {id} joining the cluster ({p} partitions, {ttl:g} s leases); Ctrl-C stops",
    },
}


def _m(key: str, lang: str, **kw: Any) -> str:
    return message(CLUSTER_MESSAGES, key, lang, **kw)


def _instant(lang: str) -> Callable[[str], datetime]:
    def parse(text: str) -> datetime:
        try:
            t = datetime.fromisoformat(text)
        except ValueError:
            t = None
        if t is None or t.tzinfo is None:
            raise argparse.ArgumentTypeError(_m("bad_instant", lang, value=text))
        return t

    return parse


def add_cluster_commands(
    subparsers: Any,
    *,
    parents: Sequence[argparse.ArgumentParser] = (),
    lang: str = "vi",
    func: Callable[..., int] | None = None,
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Add ``worker`` and ``cluster status`` to ``subparsers``; ``func`` becomes each command's
    ``func`` default (how ``tcs`` dispatches); ``run_cluster_command`` does the work."""
    common = list(parents)

    def own_options(p: argparse.ArgumentParser) -> None:
        if not parents:
            p.add_argument("--lang", choices=("vi", "en"), default="vi", help=_m("opt.lang", lang))
        if func is not None:
            p.set_defaults(func=func)

    defaults = ClusterConfig()
    worker: argparse.ArgumentParser = subparsers.add_parser(
        "worker", help=_m("worker", lang), description=_m("worker", lang), parents=common
    )
    worker.add_argument(
        "--partitions",
        type=int,
        default=defaults.partitions,
        metavar="P",
        help=_m("opt.partitions", lang),
    )
    worker.add_argument(
        "--lease-ttl",
        type=float,
        default=defaults.lease_ttl_s,
        metavar="S",
        help=_m("opt.ttl", lang),
    )
    worker.add_argument(
        "--renew", type=float, default=defaults.renew_s, metavar="S", help=_m("opt.renew", lang)
    )
    worker.add_argument(
        "--transport",
        action="append",
        dest="transports",
        metavar="NAME",
        help=_m("opt.transport", lang),
    )
    worker.add_argument("--worker-id", metavar="ID", help=_m("opt.worker_id", lang))
    worker.add_argument("--events", metavar="FILE", help=_m("opt.events", lang))
    worker.add_argument("--log-fires", action="store_true", help=_m("opt.log_fires", lang))
    worker.add_argument("--speed", type=float, metavar="X", help=_m("opt.speed", lang))
    worker.add_argument(
        "--clock-start", type=_instant(lang), metavar="ISO", help=_m("opt.clock_start", lang)
    )
    worker.add_argument(
        "--clock-epoch", type=float, metavar="UNIX", help=_m("opt.clock_epoch", lang)
    )
    own_options(worker)

    cluster: argparse.ArgumentParser = subparsers.add_parser(
        "cluster", help=_m("cluster", lang), description=_m("cluster", lang)
    )
    cmds = cluster.add_subparsers(dest="cluster_command", required=True, metavar="SUBCOMMAND")
    status = cmds.add_parser(
        "status", help=_m("status", lang), description=_m("status", lang), parents=common
    )
    status.add_argument(
        "--format", choices=("table", "json"), default="table", help=_m("opt.format", lang)
    )
    own_options(status)
    return worker, cluster


def _transports(names: Sequence[str], lang: str) -> list[Transport]:
    out: list[Transport] = []
    for name in names:
        if name == "memory":
            from tcs_core.memory import MemoryTransport

            out.append(MemoryTransport("memory"))
            continue
        factory = load_transport_factory(name)
        try:
            out.append(factory())
        except Exception as exc:
            raise ValidationError(
                "transport", _m("transport_failed", lang, name=name, reason=exc)
            ) from None
    return out


def run_cluster_command(
    args: argparse.Namespace, settings: Settings, *, stdout: TextIO | None = None
) -> int:
    """Run the parsed ``worker`` or ``cluster status`` command; returns the exit code.

    Errors are raised (``ValidationError``: a usage error for ``tcs``, exit code 2)."""
    out = stdout if stdout is not None else sys.stdout
    lang = getattr(args, "lang", "vi") or "vi"
    if settings.persistence != "postgres":
        raise ValidationError("persistence", _m("needs_postgres", lang))
    try:
        import psycopg
    except ImportError:
        raise ValidationError("persistence", _m("no_psycopg", lang)) from None
    try:
        if args.command == "cluster":
            print(render_status(cluster_status(settings), args.format, lang), end="", file=out)
            return 0
        if args.command != "worker":
            raise ValueError(f"unknown cluster command {args.command!r}")
        return asyncio.run(_run_worker(args, settings, out, lang))
    except psycopg.OperationalError as exc:
        env = settings.eventsourcing_env()
        where = f"{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}/{env['POSTGRES_DBNAME']}"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TcsError(_m("unreachable", lang, where=where, reason=reason)) from None


async def _run_worker(args: argparse.Namespace, settings: Settings, out: TextIO, lang: str) -> int:
    from tcs_core.cluster.worker import Worker
    from tcs_core.scheduler import AcceleratedClock, Clock

    config = ClusterConfig(
        partitions=args.partitions, lease_ttl_s=args.lease_ttl, renew_s=args.renew
    )
    clock: Clock | None = None
    if args.speed is not None:
        if args.clock_start is None or args.clock_epoch is None:
            raise ValidationError("speed", _m("clock", lang))
        if args.speed <= 0:
            raise ValidationError("speed", "must be positive")
        clock = AcceleratedClock(args.clock_start, args.clock_epoch, args.speed)
    transports = _transports(args.transports or ["memory"], lang)
    with contextlib.ExitStack() as stack:
        events = (
            stack.enter_context(open(args.events, "a", encoding="utf-8")) if args.events else None
        )
        worker = Worker(
            settings,
            transports,
            config=config,
            clock=clock,
            worker_id=args.worker_id,
            events=events,
            log_fires=args.log_fires,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, worker.request_stop)
        print(
            _m("joined", lang, id=worker.worker_id, p=config.partitions, ttl=config.lease_ttl_s),
            file=out,
            flush=True,
        )
        await worker.run()
    return 0
