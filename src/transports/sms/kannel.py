"""Run a real Kannel on loopback: bearerbox + smsbox with the fake SMSC from ``kannel-extras``.

For tests, benchmarks and demos (Debian packages ``kannel`` and ``kannel-extras``). Every port is
picked free on 127.0.0.1; the configuration and logs go to a work directory; ``stop()`` ends every
process it started. ``fakesmsc`` logs each message Kannel hands it (``received()`` reads them
back) and sends inbound messages typed on its standard input (``send_mo``).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "FAKESMSC",
    "FakeMessage",
    "KannelBoxes",
    "free_port",
    "kannel_available",
    "kannel_conf",
    "parse_fakesmsc_log",
]

BEARERBOX = shutil.which("bearerbox") or "/usr/sbin/bearerbox"
SMSBOX = shutil.which("smsbox") or "/usr/sbin/smsbox"
FAKESMSC = "/usr/lib/kannel/test/fakesmsc"
_GOT = re.compile(r"Got message \d+: <(\S+) (\S+) (\S+) (.*)>$")


def kannel_available() -> str | None:
    """None when bearerbox, smsbox and fakesmsc are installed, else what is missing."""
    missing = [p for p in (BEARERBOX, SMSBOX, FAKESMSC) if not os.access(p, os.X_OK)]
    return None if not missing else "missing " + ", ".join(missing)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kannel_conf(
    *,
    admin_port: int,
    smsbox_port: int,
    smsc_port: int,
    sendsms_port: int,
    username: str,
    password: str,
    admin_password: str,
    workdir: Path,
    mo_url: str = "",
    log_level: int = 1,
) -> str:
    """A kannel.conf for one fake SMSC, one sendsms user and (with ``mo_url``) a catch-all
    ``sms-service`` that hands inbound messages to our receiver (no automatic reply)."""
    conf = f"""
group = core
admin-port = {admin_port}
admin-password = "{admin_password}"
admin-allow-ip = "127.0.0.1"
smsbox-port = {smsbox_port}
box-allow-ip = "127.0.0.1"
log-file = "{workdir}/bearerbox.log"
log-level = {log_level}
store-type = file
store-location = "{workdir}/kannel.store"
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
port = {smsc_port}
connect-allow-ip = "127.0.0.1"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox_port}
sendsms-port = {sendsms_port}
sendsms-interface = 127.0.0.1
global-sender = "8055"
log-file = "{workdir}/smsbox.log"
log-level = {log_level}
http-request-retry = 30
http-queue-delay = 1

group = sendsms-user
username = "{username}"
password = "{password}"
concatenation = true
max-messages = 10
"""
    if mo_url:
        conf += f"""
group = sms-service
keyword = default
catch-all = true
get-url = "{mo_url}?from=%p&to=%P&bin=%b&coding=%c&charset=%C&id=%I"
max-messages = 0
omit-empty = true
"""
    return conf


@dataclass(frozen=True)
class FakeMessage:
    """A message as the fake SMSC received it (concatenated parts joined), its text decoded."""

    sender: str
    receiver: str
    coding: str  # "ucs-2" or "text"
    text: str
    parts: int = 1


def _decode(raw: bytes, ucs2: bool) -> str:
    return raw.decode("utf-16-be" if ucs2 else "utf-8", "replace")


def parse_fakesmsc_log(lines: list[str]) -> list[FakeMessage]:
    """The messages in fakesmsc's log, concatenated parts reassembled by their UDH reference.

    fakesmsc writes ``<from to ucs-2 DATA>``, ``<from to text DATA>`` or, for one part of a
    concatenated message, ``<from to udh UDH data DATA>`` (URL-encoded, coding not stated: parts
    with NUL bytes are taken as UCS-2, which Vietnamese text always has)."""
    out: list[FakeMessage] = []
    pending: dict[tuple[str, str, int], dict[int, bytes]] = {}
    for line in lines:
        m = _GOT.search(line)
        if m is None:
            continue
        sender, receiver, kind, rest = m.groups()
        if kind == "udh":
            udh_text, _, data = rest.split(" ", 2)
            udh = unquote_to_bytes(udh_text)
            raw = unquote_to_bytes(data.replace("+", "%20"))
            if len(udh) >= 6 and udh[1] == 0:  # IEI 0: 8-bit reference, total, sequence
                ref, total, seq = udh[3], udh[4], udh[5]
                got = pending.setdefault((sender, receiver, ref), {})
                got[seq] = raw
                if len(got) == total:
                    whole = b"".join(got[i] for i in sorted(got))
                    del pending[(sender, receiver, ref)]
                    ucs2 = b"\x00" in whole
                    out.append(
                        FakeMessage(
                            sender,
                            receiver,
                            "ucs-2" if ucs2 else "text",
                            _decode(whole, ucs2),
                            total,
                        )
                    )
                continue
            out.append(FakeMessage(sender, receiver, "udh", _decode(raw, b"\x00" in raw)))
        elif kind == "ucs-2":  # URL-encoded UTF-16BE
            raw = unquote_to_bytes(rest.replace("+", "%20"))
            out.append(FakeMessage(sender, receiver, "ucs-2", _decode(raw, True)))
        else:  # plain text is logged as it is
            out.append(FakeMessage(sender, receiver, "text", rest))
    return out


class KannelBoxes:
    """bearerbox + smsbox + fakesmsc on free loopback ports (``start`` / ``stop``)."""

    def __init__(
        self,
        workdir: str | Path,
        *,
        mo_url: str = "",
        username: str = "tcs",
        password: str | None = None,
        admin_password: str | None = None,
    ) -> None:
        """Passwords default to fresh random ones (this Kannel lives only for the run)."""
        self.workdir = Path(workdir)
        self.mo_url = mo_url
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.admin_password = admin_password or secrets.token_urlsafe(12)
        self.admin_port = self.smsbox_port = self.smsc_port = self.sendsms_port = 0
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._fake_log: IO[bytes] | None = None

    @property
    def sendsms_url(self) -> str:
        """smsbox's sendsms interface."""
        return f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"

    @property
    def admin_url(self) -> str:
        """bearerbox's admin interface."""
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout_s: float = 20.0) -> KannelBoxes:
        """Write the configuration, start the three processes and wait until they serve."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.admin_port, self.smsbox_port = free_port(), free_port()
        self.smsc_port, self.sendsms_port = free_port(), free_port()
        conf = self.workdir / "kannel.conf"
        conf.write_text(
            kannel_conf(
                admin_port=self.admin_port,
                smsbox_port=self.smsbox_port,
                smsc_port=self.smsc_port,
                sendsms_port=self.sendsms_port,
                username=self.username,
                password=self.password,
                admin_password=self.admin_password,
                workdir=self.workdir,
                mo_url=self.mo_url,
            )
        )
        try:
            self._spawn("bearerbox", [BEARERBOX, str(conf)])
            _wait_port(self.admin_port, timeout_s, self._procs["bearerbox"], "bearerbox")
            _wait_port(self.smsc_port, timeout_s, self._procs["bearerbox"], "bearerbox")
            self._spawn("smsbox", [SMSBOX, str(conf)])
            _wait_port(self.sendsms_port, timeout_s, self._procs["smsbox"], "smsbox")
            self.start_smsc(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def start_smsc(self, timeout_s: float = 20.0) -> None:
        """(Re)start the fake SMSC and wait until bearerbox sees it online."""
        self._fake_log = open(self.workdir / "fakesmsc.log", "ab")  # noqa: SIM115
        cmd = [FAKESMSC, "-H", "127.0.0.1", "-r", str(self.smsc_port)]
        self._procs["fakesmsc"] = subprocess.Popen(  # noqa: S603 (fixed Debian binary)
            cmd, stdin=subprocess.PIPE, stdout=self._fake_log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "online" in self.status():
                return
            time.sleep(0.05)
        raise RuntimeError("the fake SMSC did not come online in bearerbox")

    def stop_smsc(self) -> None:
        """Take the fake SMSC down (bearerbox then queues messages in its store)."""
        self._end("fakesmsc")
        if self._fake_log is not None:
            self._fake_log.close()
            self._fake_log = None

    def status(self) -> str:
        """bearerbox's ``status.txt`` (empty if it does not answer)."""
        import urllib.request

        url = f"{self.admin_url}/status.txt?password={quote(self.admin_password)}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback)
                return str(resp.read().decode("utf-8", "replace"))
        except OSError:
            return ""

    def send_mo(self, sender: str, receiver: str, text: str) -> None:
        """An inbound message from ``sender``, typed into fakesmsc (UCS-2 unless plain ASCII)."""
        proc = self._procs.get("fakesmsc")
        if proc is None or proc.stdin is None:
            raise RuntimeError("the fake SMSC is not running")
        if text.isascii():
            line = f"{sender} {receiver} data {quote(text)}\n"
        else:
            line = f"{sender} {receiver} ucs2 {quote(text.encode('utf-16-be'))}\n"
        proc.stdin.write(line.encode())
        proc.stdin.flush()

    def received(self) -> list[FakeMessage]:
        """Every message the fake SMSC got so far (across restarts of it), decoded."""
        path = self.workdir / "fakesmsc.log"
        if not path.exists():
            return []
        return parse_fakesmsc_log(path.read_text("utf-8", "replace").splitlines())

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.workdir / f"{name}.out", "ab")  # noqa: SIM115
        self._procs[name] = subprocess.Popen(  # noqa: S603 (fixed Debian binaries)
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        out.close()

    def _end(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def stop(self) -> None:
        """End every process this object started (fake SMSC, smsbox, bearerbox)."""
        self.stop_smsc()
        self._end("smsbox")
        self._end("bearerbox")

    def __enter__(self) -> KannelBoxes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} (see {name}.out)")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:g} s")
