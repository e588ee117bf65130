"""Load for the intake benchmark: the messages, and an asyncio SMTP client that
measures each message from the final dot to the 250 (see bench/intake.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import random
import resource
import time
from collections import Counter
from dataclasses import dataclass, field

HOST = "127.0.0.1"
QUEUE_ADDRESSES = (
    b"help-desk@example.com",
    b"service-desk@example.com",
    b"tech-support@example.com",
)
MESSAGE_SIZE = 5 * 1024
ATTACHMENT_SIZE = 100 * 1024
ATTACHMENT_EVERY = 10
REPLY_TIMEOUT = 120.0  # seconds for one whole SMTP transaction
MAX_REPLY_LINES = 64


class MessageFactory:
    """Builds message ``i`` from pre-built parts: headers, ~5 KB text, 100 KB attachment."""

    def __init__(self, run_id: str, senders: int) -> None:
        self.run_id = run_id
        self.senders = senders
        rng = random.Random(20261126)
        words = [
            *("printer", "network", "invoice", "password", "account", "laptop", "screen"),
            *("error", "update", "access", "email", "server", "backup", "license", "phone"),
            *("mailbox", "calendar", "vpn", "ticket", "please", "again", "since", "urgent"),
            *("yesterday", "morning", "cannot", "still", "broken"),
        ]
        lines = []
        size = 0
        while size < MESSAGE_SIZE - 620:
            line = " ".join(rng.choice(words) for _ in range(11)).capitalize() + "."
            lines.append(line)
            size += len(line) + 2
        self.text = ("\r\n".join(lines) + "\r\n").encode()
        blob = rng.randbytes(ATTACHMENT_SIZE)
        self.attachment = base64.encodebytes(blob).replace(b"\n", b"\r\n")
        # The templates are fixed and the variable parts are digits, so no line
        # starts with a dot and no dot-stuffing is needed; make sure of it.
        assert b"\r\n." not in self.text and b"\r\n." not in self.attachment

    def build(self, i: int) -> tuple[bytes, bytes, bytes]:
        """(MAIL FROM address, RCPT TO address, message bytes ending in CRLF)."""
        sender_no = i if self.senders <= 0 else i % self.senders
        sender = b"customer%d@customer.example" % sender_no
        rcpt = QUEUE_ADDRESSES[i % len(QUEUE_ADDRESSES)]
        headers = (
            b"Received: from mx%d.customer.example (mx%d.customer.example [192.0.2.%d])\r\n"
            b"\tby mail.example.com with ESMTP; Thu, 26 Nov 2026 09:00:00 +0100\r\n"
            b"From: Customer %d <%s>\r\n"
            b"To: %s\r\n"
            b"Subject: =?utf-8?q?Request_%d=3A_Drucker_kaputt_=C3=BCberall?=\r\n"
            b"Message-ID: <bench-%s-%d@customer.example>\r\n"
            b"Date: Thu, 26 Nov 2026 09:00:00 +0100\r\n"
            b"MIME-Version: 1.0\r\n"
            % (i % 7, i % 7, i % 250, sender_no, sender, rcpt, i, self.run_id.encode(), i)
        )
        intro = b"Hello support,\r\n\r\nthis is request number %d.\r\n\r\n" % i
        if i % ATTACHMENT_EVERY != ATTACHMENT_EVERY - 1:
            data = (
                headers
                + b"Content-Type: text/plain; charset=utf-8\r\n"
                + b"Content-Transfer-Encoding: 7bit\r\n\r\n"
                + intro
                + self.text
            )
            return sender, rcpt, data
        boundary = b"=_bench_%d" % i
        data = (
            headers
            + b'Content-Type: multipart/mixed; boundary="%s"\r\n\r\n' % boundary
            + b"--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" % boundary
            + intro
            + self.text
            + b"--%s\r\nContent-Type: application/pdf\r\n" % boundary
            + b"Content-Transfer-Encoding: base64\r\n"
            + b'Content-Disposition: attachment; filename="report-%d.pdf"\r\n\r\n' % i
            + self.attachment
            + b"--%s--\r\n" % boundary
        )
        return sender, rcpt, data


class SMTPError(Exception):
    pass


@dataclass
class LoadResult:
    sent: int = 0
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    client_cpu: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    lines = []
    for _ in range(MAX_REPLY_LINES):
        line = await reader.readline()
        if not line:
            raise SMTPError("server closed the connection")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), b"".join(lines)
    raise SMTPError(f"reply longer than {MAX_REPLY_LINES} lines")


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes, expect: int
) -> None:
    writer.write(line)
    code, text = await _reply(reader)
    if code != expect:
        raise SMTPError(text.decode(errors="replace").strip())


async def _connection(
    port: int,
    factory: MessageFactory,
    indices,  # an iterator shared by all connections (single thread: no lock needed)
    result: LoadResult,
    greeted: asyncio.Event,
    counter: list[int],
    go: asyncio.Event,
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    # Zero high-water mark: drain() returns only when every byte is in the kernel.
    writer.transport.set_write_buffer_limits(high=0)
    try:
        async with asyncio.timeout(REPLY_TIMEOUT):
            code, text = await _reply(reader)
            if code != 220:
                raise SMTPError(text.decode(errors="replace").strip())
            await _command(reader, writer, b"EHLO bench-client.customer.example\r\n", 250)
        counter[0] -= 1
        if counter[0] == 0:
            greeted.set()
        await go.wait()
        for i in indices:
            sender, rcpt, data = factory.build(i)
            result.sent += 1
            async with asyncio.timeout(REPLY_TIMEOUT):
                try:
                    await _command(reader, writer, b"MAIL FROM:<%s>\r\n" % sender, 250)
                    await _command(reader, writer, b"RCPT TO:<%s>\r\n" % rcpt, 250)
                    await _command(reader, writer, b"DATA\r\n", 354)
                except SMTPError as exc:
                    result.refused[str(exc)[:80]] += 1
                    await _command(reader, writer, b"RSET\r\n", 250)
                    continue
                writer.write(data)
                await writer.drain()
                started = time.perf_counter()
                writer.write(b".\r\n")
                code, text = await _reply(reader)
                latency = time.perf_counter() - started
            if code == 250:
                result.accepted += 1
                result.latencies.append(latency)
            else:
                result.refused[text.decode(errors="replace").strip()[:80]] += 1
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await _command(reader, writer, b"QUIT\r\n", 221)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await writer.wait_closed()


async def _load(
    ports: list[int], factory: MessageFactory, messages: int, connections: int
) -> LoadResult:
    """Send ``messages`` over ``connections``, spread round-robin over ``ports``."""
    result = LoadResult()
    indices = iter(range(messages))
    greeted, go = asyncio.Event(), asyncio.Event()
    counter = [connections]
    tasks = [
        asyncio.create_task(
            _connection(ports[n % len(ports)], factory, indices, result, greeted, counter, go)
        )
        for n in range(connections)
    ]
    waiter = asyncio.create_task(greeted.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:  # a connection failed before everyone was greeted
        waiter.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()
        raise SMTPError("a connection ended before the start")
    cpu_before = _own_cpu()
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - started
    result.client_cpu = _own_cpu() - cpu_before
    return result


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def many_parts(index: int, parts: int = 20_000) -> bytes:
    """The stall test's message: 20,000 MIME parts in about 1.8 MB."""
    part = (
        b"--p\r\nContent-Type: text/plain\r\n\r\n" + b"part of a very long message " * 2 + b"\r\n"
    )
    return (
        b"From: Bomb <bomb@customer.example>\r\nTo: help-desk@example.com\r\n"
        b"Subject: Request %d: many parts\r\nMessage-ID: <bomb-%d@customer.example>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n'
        % (index, index)
        + part * parts
        + b"--p--\r\n"
    )


async def send_one(port: int, sender: bytes, rcpt: bytes, data: bytes) -> tuple[float, float]:
    """One message on a new connection: (monotonic time of the 250, dot-to-250 seconds)."""
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    writer.transport.set_write_buffer_limits(high=0)
    try:
        async with asyncio.timeout(REPLY_TIMEOUT):
            await _reply(reader)
            await _command(reader, writer, b"EHLO bench-client.customer.example\r\n", 250)
            await _command(reader, writer, b"MAIL FROM:<%s>\r\n" % sender, 250)
            await _command(reader, writer, b"RCPT TO:<%s>\r\n" % rcpt, 250)
            await _command(reader, writer, b"DATA\r\n", 354)
            writer.write(data)
            await writer.drain()
            started = time.perf_counter()
            writer.write(b".\r\n")
            code, text = await _reply(reader)
            done = time.perf_counter()
            if code != 250:
                raise SMTPError(text.decode(errors="replace").strip())
            await _command(reader, writer, b"QUIT\r\n", 221)
        return time.monotonic(), done - started
    finally:
        writer.close()


async def paced(
    port: int, factory: MessageFactory, first: int, rate: float, seconds: float, connections: int
) -> dict[int, float]:
    """Send ``rate`` messages a second for ``seconds`` over ``connections`` sessions, each
    message at its scheduled moment; returns index -> monotonic time of its 250."""
    total = int(rate * seconds)
    accepted: dict[int, float] = {}
    indices = iter(range(first, first + total))
    start = time.monotonic() + 0.5

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                await _reply(reader)
                await _command(reader, writer, b"EHLO bench-client.customer.example\r\n", 250)
            for i in indices:
                delay = start + (i - first) / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sender, rcpt, data = factory.build(i)
                async with asyncio.timeout(REPLY_TIMEOUT):
                    await _command(reader, writer, b"MAIL FROM:<%s>\r\n" % sender, 250)
                    await _command(reader, writer, b"RCPT TO:<%s>\r\n" % rcpt, 250)
                    await _command(reader, writer, b"DATA\r\n", 354)
                    writer.write(data + b".\r\n")
                    code, _ = await _reply(reader)
                if code == 250:
                    accepted[i] = time.monotonic()
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return accepted
