"""``tcs devices``: discover devices by zeroconf, list the pending ones, accept or reject them.

The ``tcs`` command wires these in with two calls (see docs/discovery.md)::

    add_discovery_commands(commands, parents=[common], lang=out.lang, func=_cmd_devices)

    def _cmd_devices(out, args):
        return run_discovery_command(
            args, open_app=lambda: SourceSystem(_settings(args)), stdout=out.console.file
        )

Commands:

- ``tcs devices discover [--seconds N] [--interface ADDR ...] [--type TYPE=TRANSPORT ...]
  [--record] [--json]``: browse for the service types the installed transports declare and list
  what answered; ``--record`` keeps the finds as *pending* devices (nothing is registered);
- ``tcs devices pending [--json]``: the devices waiting for an admin;
- ``tcs devices accept ID --area CODE --as USER [--name NAME] [--setting K=V ...]``: register one
  (``ID``: the id or its first 8 characters, as listed);
- ``tcs devices reject ID --reason TEXT --as USER``.

``build_discovery_parser()`` gives the same commands as a parser of their own (with ``--db`` and
``--lang``) and ``main(argv)`` runs it on a SQLite file, for use without the ``tcs`` wiring.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.table import Table

from tcs_core.domain.discovered import DiscoveredService, RecordOutcome
from tcs_core.errors import NotFound, ValidationError
from tcs_core.i18n import message

if TYPE_CHECKING:
    from tcs_core.app import SourceSystem
    from tcs_core.projections import DiscoveredView

__all__ = [
    "DISCOVERY_MESSAGES",
    "add_discovery_commands",
    "build_discovery_parser",
    "main",
    "run_discovery_command",
]

DISCOVERY_MESSAGES: dict[str, dict[str, str]] = {
    "devices": {
        "vi": "thiết bị: tìm trên mạng nội bộ (zeroconf), duyệt thiết bị chờ đăng ký",
        "en": "devices: find them on the LAN (zeroconf), review the pending ones",
    },
    "discover": {
        "vi": "tìm thiết bị đang quảng bá trên mạng nội bộ (mDNS/DNS-SD)",
        "en": "find devices advertising on the LAN (mDNS/DNS-SD)",
    },
    "pending": {"vi": "liệt kê thiết bị chờ duyệt", "en": "list the devices awaiting review"},
    "accept": {
        "vi": "duyệt và đăng ký một thiết bị tìm thấy vào một địa bàn",
        "en": "accept a discovered device and register it in an area",
    },
    "reject": {"vi": "từ chối một thiết bị tìm thấy", "en": "reject a discovered device"},
    "opt.seconds": {
        "vi": "thời gian tìm, tính bằng giây (mặc định 3)",
        "en": "how long to browse, in seconds (default 3)",
    },
    "opt.interface": {
        "vi": "địa chỉ IP của giao diện mạng để tìm (lặp lại được; mặc định: mọi giao diện; "
        "dùng 127.0.0.1 cho tcs demo)",
        "en": "IP address of an interface to browse on (repeatable; default: every interface; "
        "use 127.0.0.1 for tcs demo)",
    },
    "opt.type": {
        "vi": "thêm một loại dịch vụ, dạng _loai._tcp=ten_giao_thuc",
        "en": "also browse for a service type, as _type._tcp=transport_name",
    },
    "opt.record": {
        "vi": "ghi các thiết bị tìm thấy vào danh sách chờ duyệt (không đăng ký thiết bị nào)",
        "en": "record the finds as pending devices (registers nothing)",
    },
    "opt.json": {"vi": "in kết quả dạng JSON", "en": "print JSON"},
    "opt.id": {
        "vi": "mã thiết bị chờ duyệt (hoặc 8 ký tự đầu)",
        "en": "id of the pending device (or its first 8 characters)",
    },
    "opt.area": {"vi": "mã địa bàn đặt thiết bị", "en": "code of the area to put it in"},
    "opt.as": {"vi": "tên đăng nhập của quản trị viên", "en": "username of the admin"},
    "opt.name": {"vi": "tên thiết bị (mặc định: tên quảng bá)", "en": "device name"},
    "opt.setting": {
        "vi": "cài đặt thiết bị K=V (lặp lại được; bí mật dạng env:TEN_BIEN)",
        "en": "device setting K=V (repeatable; secrets as env:NAME)",
    },
    "opt.reason": {"vi": "lý do từ chối", "en": "why it is rejected"},
    "opt.db": {"vi": "đường dẫn tệp SQLite", "en": "path of the SQLite file"},
    "opt.lang": {"vi": "ngôn ngữ hiển thị (vi, en)", "en": "display language (vi, en)"},
    "browsing": {
        "vi": "Đang tìm {types} trong {seconds:g} giây…",
        "en": "Browsing for {types} for {seconds:g} s…",
    },
    "no_types": {
        "vi": "không giao thức nào khai báo loại dịch vụ để tìm (discovery_service_types); "
        "dùng --type",
        "en": "no installed transport declares service types (discovery_service_types); use --type",
    },
    "skipped_plugin": {
        "vi": "Bỏ qua giao thức không nạp được: {note}",
        "en": "Skipped a transport that could not be loaded: {note}",
    },
    "found.title": {"vi": "Tìm thấy {n} thiết bị", "en": "Found {n} device(s)"},
    "pending.title": {"vi": "{n} thiết bị chờ duyệt", "en": "{n} device(s) awaiting review"},
    "none": {"vi": "Không tìm thấy thiết bị nào.", "en": "No device found."},
    "pending.none": {"vi": "Không có thiết bị chờ duyệt.", "en": "No device awaits review."},
    "col.id": {"vi": "Mã", "en": "Id"},
    "col.name": {"vi": "Tên", "en": "Name"},
    "col.kind": {"vi": "Loại", "en": "Kind"},
    "col.channels": {"vi": "Kênh", "en": "Channels"},
    "col.transport": {"vi": "Giao thức", "en": "Transport"},
    "col.address": {"vi": "Địa chỉ", "en": "Address"},
    "col.model": {"vi": "Kiểu máy", "en": "Model"},
    "col.status": {"vi": "Trạng thái", "en": "Status"},
    "col.seen": {"vi": "Thấy lúc", "en": "Seen at"},
    "status.found": {"vi": "chưa ghi", "en": "not recorded"},
    "status.new": {"vi": "mới, chờ duyệt", "en": "new, awaiting review"},
    "status.updated": {"vi": "đã cập nhật", "en": "updated"},
    "status.unchanged": {"vi": "đã ghi trước đó", "en": "recorded before"},
    "status.known": {"vi": "đã đăng ký", "en": "already registered"},
    "problem": {
        "vi": "Không đọc được quảng bá {service}: {field}: {reason}",
        "en": "Could not read the advertisement {service}: {field}: {reason}",
    },
    "recorded": {
        "vi": "Đã ghi {n} thiết bị mới vào danh sách chờ duyệt; quản trị viên duyệt bằng "
        "`tcs devices accept`.",
        "en": "Recorded {n} new pending device(s); an admin accepts them with "
        "`tcs devices accept`.",
    },
    "accepted": {
        "vi": "Đã đăng ký thiết bị {name} (mã {device_id}).",
        "en": "Registered device {name} (id {device_id}).",
    },
    "rejected": {"vi": "Đã từ chối {name}.", "en": "Rejected {name}."},
    "rejected.before": {"vi": "{name} đã bị từ chối trước đó.", "en": "{name} was rejected."},
    "no_such": {
        "vi": "không có thiết bị tìm thấy nào có mã {id!r}",
        "en": "no discovered device has the id {id!r}",
    },
    "ambiguous": {
        "vi": "mã {id!r} khớp nhiều thiết bị; cho thêm ký tự",
        "en": "the id {id!r} matches several devices; give more characters",
    },
    "bad_type": {
        "vi": "loại dịch vụ không hợp lệ {value!r}: dùng dạng _loai._tcp=ten_giao_thuc",
        "en": "invalid service type {value!r}: use _type._tcp=transport_name",
    },
    "bad_seconds": {
        "vi": "thời gian tìm phải từ 0 đến 3600 giây, không phải {value:g}",
        "en": "browse for between 0 and 3600 seconds, not {value:g}",
    },
    "bad_setting": {
        "vi": "cài đặt {value!r} không hợp lệ: dùng dạng K=V",
        "en": "invalid setting {value!r}: use K=V",
    },
}


def _m(key: str, lang: str, **kw: Any) -> str:
    return message(DISCOVERY_MESSAGES, key, lang, **kw)


def add_discovery_commands(
    subparsers: Any,
    *,
    parents: Sequence[argparse.ArgumentParser] = (),
    lang: str = "vi",
    func: Callable[..., int] | None = None,
) -> argparse.ArgumentParser:
    """Add ``devices discover|pending|accept|reject`` to ``subparsers``.

    ``parents`` carry the shared options (``--db``, ``--config``, ``--lang``); without them the
    commands get ``--lang`` of their own. ``func`` becomes each command's ``func`` default (how
    ``tcs`` dispatches); ``run_discovery_command`` does the work either way."""
    devices: argparse.ArgumentParser = subparsers.add_parser(
        "devices", help=_m("devices", lang), description=_m("devices", lang)
    )
    cmds = devices.add_subparsers(dest="devices_command", required=True, metavar="SUBCOMMAND")

    def leaf(name: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = cmds.add_parser(
            name, help=_m(name, lang), description=_m(name, lang), parents=list(parents)
        )
        if not parents:
            p.add_argument("--lang", choices=("vi", "en"), default="vi", help=_m("opt.lang", lang))
        if func is not None:
            p.set_defaults(func=func)
        return p

    discover = leaf("discover")
    discover.add_argument(
        "--seconds", type=float, default=3.0, metavar="N", help=_m("opt.seconds", lang)
    )
    discover.add_argument(
        "--interface", action="append", metavar="ADDR", help=_m("opt.interface", lang)
    )
    discover.add_argument(
        "--type", action="append", default=[], metavar="TYPE=TRANSPORT", help=_m("opt.type", lang)
    )
    discover.add_argument("--record", action="store_true", help=_m("opt.record", lang))
    discover.add_argument("--json", action="store_true", help=_m("opt.json", lang))

    pending = leaf("pending")
    pending.add_argument("--json", action="store_true", help=_m("opt.json", lang))

    accept = leaf("accept")
    accept.add_argument("id", metavar="ID", help=_m("opt.id", lang))
    accept.add_argument("--area", required=True, metavar="CODE", help=_m("opt.area", lang))
    accept.add_argument(
        "--as", dest="actor", required=True, metavar="USER", help=_m("opt.as", lang)
    )
    accept.add_argument("--name", help=_m("opt.name", lang))
    accept.add_argument(
        "--setting", action="append", default=[], metavar="K=V", help=_m("opt.setting", lang)
    )

    reject = leaf("reject")
    reject.add_argument("id", metavar="ID", help=_m("opt.id", lang))
    reject.add_argument("--reason", required=True, help=_m("opt.reason", lang))
    reject.add_argument(
        "--as", dest="actor", required=True, metavar="USER", help=_m("opt.as", lang)
    )
    return devices


def _console(stdout: TextIO) -> Console:
    width = None if stdout.isatty() else 160
    return Console(file=stdout, width=width, highlight=False, markup=False)


def _found_json(f: DiscoveredService, status: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "service_name": f.service_name,
        "service_type": f.service_type,
        "name": f.name,
        "kind": f.kind.value,
        "channels": [c.value for c in f.channels],
        "transport": f.transport,
        "address": f.address,
        "model": f.model,
        "properties": f.props,
    }
    if status is not None:
        doc["status"] = status
    return doc


def _view_json(v: DiscoveredView) -> dict[str, Any]:
    return {
        "id": str(v.discovered_id),
        "service_name": v.service_name,
        "name": v.name,
        "kind": v.kind.value,
        "channels": [c.value for c in v.channels],
        "transport": v.transport,
        "address": v.address,
        "model": v.model,
        "properties": v.properties,
        "status": v.status,
        "discovered_at": v.discovered_at.isoformat(),
        "updated_at": v.updated_at.isoformat(),
    }


def _extra_types(values: Sequence[str], lang: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in values:
        stype, sep, transport = raw.partition("=")
        if not sep or not stype.strip() or not transport.strip():
            raise ValidationError("--type", _m("bad_type", lang, value=raw))
        out[stype.strip()] = transport.strip()
    return out


def _settings(values: Sequence[str], lang: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            raise ValidationError("--setting", _m("bad_setting", lang, value=raw))
        out[key.strip()] = value
    return out


def _entry(app: SourceSystem, given: str, lang: str) -> DiscoveredView:
    text = given.strip().lower()
    matches = [v for v in app.discovered.all() if str(v.discovered_id).startswith(text)]
    if not text or not matches:
        raise NotFound(_m("no_such", lang, id=given))
    if len(matches) > 1:
        raise ValidationError("id", _m("ambiguous", lang, id=given))
    return matches[0]


def run_discovery_command(
    args: argparse.Namespace,
    *,
    open_app: Callable[[], SourceSystem] | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run the parsed ``devices`` command; returns the exit code (0).

    ``open_app`` opens the store (needed by everything but a plain ``discover``); the app is
    closed afterwards. Errors are raised (``ValidationError``, ``NotFound``, ``PermissionDenied``:
    ``tcs`` prints them as one line)."""
    out = stdout if stdout is not None else sys.stdout
    lang = getattr(args, "lang", "vi") or "vi"
    console = _console(out)
    command = args.devices_command
    needs_app = command != "discover" or args.record
    if needs_app and open_app is None:
        raise ValidationError("db", "this command needs the event store")
    app = open_app() if needs_app and open_app is not None else None
    try:
        if command == "discover":
            return _discover(args, app, console, lang)
        assert app is not None
        if command == "pending":
            return _pending(args, app, console, lang)
        if command == "accept":
            entry = _entry(app, args.id, lang)
            device_id = app.accept_discovered(
                entry.discovered_id,
                area=args.area,
                actor=args.actor,
                name=args.name,
                settings=_settings(args.setting, lang),
            )
            view = app.devices.get(device_id)
            name = view.name if view is not None else entry.name
            console.print(_m("accepted", lang, name=name, device_id=device_id))
            return 0
        if command == "reject":
            entry = _entry(app, args.id, lang)
            changed = app.reject_discovered(entry.discovered_id, args.reason, actor=args.actor)
            console.print(_m("rejected" if changed else "rejected.before", lang, name=entry.name))
            return 0
        raise ValueError(f"unknown devices command {command!r}")
    finally:
        if app is not None:
            app.close()


def _discover(
    args: argparse.Namespace, app: SourceSystem | None, console: Console, lang: str
) -> int:
    # zeroconf (the server extra) is imported only when browsing: `tcs` works without it.
    from tcs_core.discovery import browse, installed_service_types, record_found

    if not (0 < args.seconds <= 3600):
        raise ValidationError("--seconds", _m("bad_seconds", lang, value=args.seconds))
    declarations, notes = installed_service_types(_extra_types(args.type, lang))
    for note in notes:
        console.print(_m("skipped_plugin", lang, note=note), style="dim")
    if not declarations:
        raise ValidationError("--type", _m("no_types", lang))
    if not args.json:
        types = ", ".join(sorted(declarations))
        console.print(_m("browsing", lang, types=types, seconds=args.seconds), style="dim")
    result = asyncio.run(browse(declarations, args.seconds, interfaces=args.interface))
    statuses: list[str | None] = [None] * len(result.found)
    if app is not None:
        records = record_found(app, result.found)
        statuses = [r.outcome.value for r in records]
    if args.json:
        doc = {
            "found": [_found_json(f, s) for f, s in zip(result.found, statuses, strict=True)],
            "problems": [
                {"service_name": p.service_name, "field": p.field, "reason": p.reason}
                for p in result.problems
            ],
        }
        console.file.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
        return 0
    if result.found:
        table = Table(title=_m("found.title", lang, n=len(result.found)))
        for key in ("name", "kind", "channels", "transport", "address", "model", "status"):
            table.add_column(_m(f"col.{key}", lang), overflow="fold")
        for f, status in zip(result.found, statuses, strict=True):
            table.add_row(
                f.name,
                f.kind.value,
                ", ".join(c.value for c in f.channels),
                f.transport,
                f.address,
                f.model,
                _m(f"status.{status or 'found'}", lang),
            )
        console.print(table)
    else:
        console.print(_m("none", lang))
    for p in result.problems:
        line = _m("problem", lang, service=p.service_name, field=p.field, reason=p.reason)
        console.print(line, style="yellow", soft_wrap=True)
    if app is not None:
        new = sum(1 for s in statuses if s == RecordOutcome.NEW.value)
        console.print(_m("recorded", lang, n=new))
    return 0


def _pending(args: argparse.Namespace, app: SourceSystem, console: Console, lang: str) -> int:
    views = app.discovered.pending()
    if args.json:
        console.file.write(
            json.dumps([_view_json(v) for v in views], ensure_ascii=False, indent=2) + "\n"
        )
        return 0
    if not views:
        console.print(_m("pending.none", lang))
        return 0
    table = Table(title=_m("pending.title", lang, n=len(views)))
    for key in ("id", "name", "kind", "channels", "transport", "address", "model", "seen"):
        table.add_column(_m(f"col.{key}", lang), overflow="fold")
    for v in views:
        table.add_row(
            str(v.discovered_id)[:8],
            v.name,
            v.kind.value,
            ", ".join(c.value for c in v.channels),
            v.transport,
            v.address,
            v.model,
            v.updated_at.isoformat(timespec="seconds"),
        )
    console.print(table)
    return 0


def build_discovery_parser(lang: str = "vi") -> argparse.ArgumentParser:
    """A parser with just the ``devices`` commands, plus ``--db`` (for ``main``)."""
    p = argparse.ArgumentParser(prog="tcs", description=_m("devices", lang))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", metavar="PATH", default="tcs.sqlite", help=_m("opt.db", lang))
    common.add_argument("--lang", choices=("vi", "en"), default="vi", help=_m("opt.lang", lang))
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_discovery_commands(commands, parents=[common], lang=lang)
    return p


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> int:
    """``python -m tcs_core.discovery_cli devices discover ...`` on the SQLite file ``--db``."""
    from tcs_core.app import SourceSystem
    from tcs_core.config import Settings

    argv = list(sys.argv[1:] if argv is None else argv)
    lang = "en" if "--lang" in argv and argv[argv.index("--lang") + 1 :][:1] == ["en"] else "vi"
    args = build_discovery_parser(lang).parse_args(argv)
    return run_discovery_command(
        args, open_app=lambda: SourceSystem(Settings.sqlite(args.db)), stdout=stdout
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
