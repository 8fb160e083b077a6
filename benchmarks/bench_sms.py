"""P6: SMS submissions per second: to Kannel on loopback, and to the minimal HTTP/JSON stub gateway
(the ceiling of this machine and client), each beside a bare aiohttp client, in one run.

Peers, each in its own processes (the machine has two cores):

- Kannel 1.4 (bearerbox + smsbox + the fake SMSC of ``kannel-extras``) on free loopback ports,
  started and stopped by this script (``transports.sms.kannel.KannelBoxes``);
- ``examples/sms_gateway_stub.py`` as a subprocess.

Four measurements, N messages each, to N distinct numbers, one UCS-2 segment of Vietnamese text:

1. raw → Kannel: a bare aiohttp client GETs ``/cgi-bin/sendsms`` (C requests in flight);
2. tcs → Kannel: ``SmsTransport.send`` (encoding, number check, the durable journal written
   before and after each request, pacing, C in flight); also how long until the fake SMSC had
   all N;
3. raw → stub: a bare aiohttp client POSTs the same JSON the adapter sends;
4. tcs → stub: ``SmsTransport.send`` through ``HttpJsonGateway``.

Run from the repository root::

    python benchmarks/bench_sms.py                    # 5,000 messages, 128 in flight
    python benchmarks/bench_sms.py -n 20000 -c 256
    python benchmarks/bench_sms.py --journal-sync full   # fsync per journal write
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from transports.sms import HttpJsonGateway, KannelGateway, SmsTransport, encode
from transports.sms.kannel import KannelBoxes, free_port, kannel_available

ROOT = Path(__file__).resolve().parents[1]
TEXT = "UBND xã thông báo: lịch tiêm chủng lúc 7h30 tại trạm y tế xã."


def numbers(n: int, prefix: str) -> list[str]:
    return [f"+849{prefix}{i:07d}" for i in range(n)]


async def raw_kannel(k: KannelBoxes, to: list[str], c: int) -> float:
    gate = asyncio.Semaphore(c)
    ok = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as s:

        async def one(n: str) -> None:
            nonlocal ok
            q = {"username": k.username, "password": k.password, "to": n.lstrip("+"),
                 "text": TEXT, "charset": "UTF-8", "coding": "2"}  # fmt: skip
            async with gate, s.get(k.sendsms_url, params=q) as r:
                await r.read()
                ok += r.status == 202

        began = time.perf_counter()
        await asyncio.gather(*(one(n) for n in to))
        elapsed = time.perf_counter() - began
    assert ok == len(to), f"only {ok} of {len(to)} accepted by Kannel"
    return elapsed


async def raw_stub(url: str, to: list[str], c: int) -> float:
    gate = asyncio.Semaphore(c)
    ok = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as s:

        async def one(i: int, n: str) -> None:
            nonlocal ok
            body = {"to": n, "from": "UBND", "text": TEXT, "coding": "ucs2", "segments": 1,
                    "reference": f"raw-{i}", "callback_url": ""}  # fmt: skip
            async with gate, s.post(url, json=body) as r:
                await r.read()
                ok += r.status == 202

        began = time.perf_counter()
        await asyncio.gather(*(one(i, n) for i, n in enumerate(to)))
        elapsed = time.perf_counter() - began
    assert ok == len(to), f"only {ok} of {len(to)} accepted by the stub"
    return elapsed


async def tcs(transport: SmsTransport, gateway: str, to: list[str], c: int, tag: str) -> float:
    gate = asyncio.Semaphore(c)
    bad: list[str] = []
    await transport.open()

    async def one(i: int, n: str) -> None:
        async with gate:
            o = await transport.send(n, TEXT, key=f"{tag}.{i}", gateway=gateway, deadline=None)
        if o.status.value != "delivered":
            bad.append(o.reason)

    began = time.perf_counter()
    await asyncio.gather(*(one(i, n) for i, n in enumerate(to)))
    elapsed = time.perf_counter() - began
    await transport.close()
    assert not bad, f"{len(bad)} not delivered, e.g. {bad[0]}"
    return elapsed


def wait_for_smsc(k: KannelBoxes, expected: int, timeout_s: float = 120.0) -> float:
    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        if len(k.received()) >= expected:
            break
        time.sleep(0.2)
    return time.perf_counter() - began


def start_stub(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "sms_gateway_stub.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the stub gateway did not start")


def line(what: str, n: int, elapsed: float) -> str:
    return f"  {what:<34} {n:>7,} in {elapsed:7.2f} s  = {n / elapsed:9,.0f} submissions/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=5000)
    parser.add_argument("-c", "--concurrency", type=int, default=128)
    parser.add_argument("--journal-sync", choices=["normal", "full"], default="normal")
    args = parser.parse_args()
    missing = kannel_available()
    if missing:
        sys.exit(f"Kannel is needed (Debian kannel, kannel-extras): {missing}")
    n, c = args.messages, args.concurrency
    assert encode(TEXT).segments == 1
    print(f"P6: {n:,} SMS (UCS-2, 1 segment), {c} in flight; load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with KannelBoxes(work / "kannel") as k:
            env = {"BENCH_KANNEL_PASSWORD": k.password}
            kannel = KannelGateway(
                name="kannel", url=k.sendsms_url, username=k.username,
                password="env:BENCH_KANNEL_PASSWORD", rate_per_s=1e6, concurrency=c,
                timeout_s=30.0,
            )  # fmt: skip
            print("Kannel (bearerbox + smsbox + fakesmsc on loopback):")
            t = asyncio.run(raw_kannel(k, numbers(n, "1"), c))
            print(line("raw aiohttp GET sendsms", n, t))
            t_smsc = wait_for_smsc(k, n)
            transport = SmsTransport(
                gateways=[kannel], journal=work / "journal-k.sqlite",
                journal_sync=args.journal_sync, environ=env,
            )  # fmt: skip
            t = asyncio.run(tcs(transport, "kannel", numbers(n, "2"), c, "k"))
            print(line(f"tcs SmsTransport (journal {args.journal_sync})", n, t))
            t_all = wait_for_smsc(k, 2 * n)
            print(
                f"  fake SMSC had every message {t_smsc:.2f} s / {t_all:.2f} s after the last "
                f"submission (raw / tcs); {len(k.received()):,} received in all"
            )
        port = free_port()
        stub = start_stub(port)
        try:
            url = f"http://127.0.0.1:{port}/send"
            print("Stub HTTP/JSON gateway (examples/sms_gateway_stub.py, own process):")
            t = asyncio.run(raw_stub(url, numbers(n, "3"), c))
            print(line("raw aiohttp POST JSON", n, t))
            gw = HttpJsonGateway(
                name="stub", url=url, rate_per_s=1e6, concurrency=c, timeout_s=30.0
            )
            transport = SmsTransport(
                gateways=[gw], journal=work / "journal-s.sqlite", journal_sync=args.journal_sync
            )
            t = asyncio.run(tcs(transport, "stub", numbers(n, "4"), c, "s"))
            print(line(f"tcs SmsTransport (journal {args.journal_sync})", n, t))
        finally:
            stub.terminate()
            stub.wait(10)
    print(json.dumps({"load_after": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
