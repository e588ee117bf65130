"""Intake benchmark: helpdesk's SMTP intake, end to end, against a do-nothing sink in the same run.

What it measures
----------------
Messages of about 5 KB, every tenth one with a 100 KB attachment (about 137 KB
base64), each with a unique Message-ID and sender (so every message opens a
ticket, creates a contact and queues an acknowledgement: the heaviest common
path), addressed in turn to the three seeded queues, sent over C concurrent
SMTP connections (``--connections``, default 8) to:

* ``sink``: an aiosmtpd server whose ``handle_DATA`` returns 250 and does
  nothing else, in a process of its own: the cost of the SMTP protocol alone;
* helpdesk as a user runs it, on a fresh database (``--database-url``:
  ``sqlite`` and, when reachable, PostgreSQL), in each ``--modes``:
  ``serve`` (``helpdesk serve``: web here, gateway and worker as children)
  and ``split`` (``helpdesk mailgate``, ``helpdesk worker`` and ``helpdesk
  web`` as separate processes). Outgoing mail goes to a closed port (the
  acknowledgements wait in the outbox; ``bench/outbound.py`` measures sending).

Per deployment, in this order:

1. burst: N messages (``--messages``, default 10,000) as fast as the
   connections go. Acceptance rate = N / time from the start to the last 250;
   p50/p99 from the final dot to the 250; end-to-end rate = N / time from the
   start until the API (``GET /api/v1/tickets``) counts all N tickets.
2. steady: ``--steady-rate`` (300) messages a second for ``--steady-seconds``
   (10), each at its scheduled moment; p50/p99 from each 250 to its ticket
   being seen on the API's first page (polled every 20 ms, so up to ~20 ms of
   each figure is the poll's).
3. stall: a 20,000-part message (1.8 MB), then at once a normal one: the
   normal one's dot-to-250, and its 250-to-visible.
4. peak RSS (VmHWM) of the gateway, the worker, its parse pool and the web
   process; CPU seconds per 1,000 messages by process.
5. with ``--smtp-source`` (after ``bench/install-smtp-source.sh``): Postfix's
   smtp-source (``-s 8 -d -l 5120``, 3,000 messages, one sender), the load
   generator the issue's figures came from, against the sink and each
   deployment: msgs/s side by side with this client's.

The sink runs alone, before the deployments; nothing else of the benchmark's
runs meanwhile but the client. Figures go to ``bench/out/intake-<time>.json``.
Other load on the machine distorts them: run twice and compare.

Profiling: ``--profile`` attaches py-spy (``--rate 100``, active samples
only) to the worker's main process during the burst and prints where its
time goes by step (parse wait, classify, thread, ticket writes,
acknowledgement, notifications, SLA, commit, ...); the parse pool's own CPU
is printed per message beside it.

How to run (from the repository root)::

    .venv/bin/python bench/intake.py --messages 2000        # quick
    .venv/bin/python bench/intake.py                        # the issue's run
    .venv/bin/python bench/intake.py --modes split --database-url sqlite --profile
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from intake_deploy import ApiWatcher, Deployment, new_database, postgres_reachable, run_sink, sink
from intake_load import MessageFactory, _load, many_parts, paced, send_one
from intake_profile import start_py_spy, stop_py_spy, summarise_py_spy

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
STEADY_BASE = 1_000_000
STALL_BASE = 2_000_000


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def smtp_source(port: int, count: int, sessions: int) -> float | None:
    """msgs/s of Postfix's smtp-source, or None when it is not installed."""
    exe = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not Path(exe).exists():
        return None
    command = [exe, "-s", str(sessions), "-d", "-m", str(count), "-l", "5120"]
    command += ["-f", "source@customer.example", "-t", "help-desk@example.com", f"127.0.0.1:{port}"]
    started = time.monotonic()
    subprocess.run(command, check=True, timeout=600, capture_output=True)
    return count / (time.monotonic() - started)


@dataclass
class Result:
    name: str
    accepted: int = 0
    refused: int = 0
    accept_rate: float = 0.0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    e2e_rate: float | None = None
    steady_sent: int = 0
    steady_p50_ms: float = math.nan
    steady_p99_ms: float = math.nan
    steady_missing: int = 0
    stall_250_ms: float = math.nan
    stall_visible_ms: float = math.nan
    stall_bomb_250_ms: float = math.nan
    smtp_source_rate: float | None = None
    smtp_source_e2e: float | None = None
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    cpu_per_1k: dict[str, float] = field(default_factory=dict)
    exit_codes: list[int | None] = field(default_factory=list)
    profile: str = ""
    api_poll_ms: float = math.nan


def run_sink_target(args: argparse.Namespace, factory: MessageFactory) -> Result:
    result = Result("sink")
    with sink(Path(__file__)) as (port, _pid):
        load = asyncio.run(_load([port], factory, args.messages, args.connections))
        if args.smtp_source:
            result.smtp_source_rate = smtp_source(port, args.smtp_source, args.connections)
    result.accepted, result.refused = load.accepted, sum(load.refused.values())
    result.accept_rate = load.accepted / load.elapsed
    result.p50_ms, result.p99_ms = load.percentile(0.5) * 1000, load.percentile(0.99) * 1000
    return result


def run_deployment(
    mode: str, spec: str, workdir: Path, args: argparse.Namespace, factory: MessageFactory
) -> Result:
    database = new_database(spec, workdir)
    name = f"{mode}-{database.label}"
    result = Result(name)
    deployment = Deployment(mode, database.url, workdir, relay="127.0.0.1:9")
    try:
        deployment.start()
        print(f"{name}: started ({', '.join(deployment.pids())})", flush=True)
        with ApiWatcher(deployment.web_port, deployment.token) as api:
            burst(deployment, api, result, args, factory)
            steady(deployment, api, result, args, factory)
            stall(deployment, api, result)
            if args.smtp_source:
                before = api.total
                started = time.monotonic()
                result.smtp_source_rate = smtp_source(
                    deployment.smtp_port, args.smtp_source, args.connections
                )
                seen = api.wait_total(before + args.smtp_source, 600)
                result.smtp_source_e2e = args.smtp_source / (seen - started) if seen else None
            result.api_poll_ms = pct(api.poll_seconds, 0.5) * 1000
        result.peak_rss_mib = deployment.peak_rss_mib()
    finally:
        result.exit_codes = deployment.stop()
        for cleanup in database.cleanup:
            cleanup()
        for log in deployment.logs:
            shutil.copy(log, OUT_DIR / f"{name}-{log.name}")
    return result


def burst(
    deployment: Deployment,
    api: ApiWatcher,
    result: Result,
    args: argparse.Namespace,
    factory: MessageFactory,
) -> None:
    n = args.messages
    print(f"{result.name}: burst of {n} messages over {args.connections} connections", flush=True)
    cpu_before = deployment.cpu()
    spy = None
    if args.profile:
        worker = deployment.pids().get("worker", [None])[0]
        spy = start_py_spy(worker, OUT_DIR / f"{result.name}.pyspy.txt", "cpu") if worker else None
    started = time.monotonic()
    load = asyncio.run(_load([deployment.smtp_port], factory, n, args.connections))
    seen = api.wait_total(n, max(300.0, n / 20))
    cpu_after = deployment.cpu()
    if spy is not None:
        stop_py_spy(spy)
        raw = OUT_DIR / f"{result.name}.pyspy.txt"
        if raw.exists():
            result.profile = summarise_py_spy(raw)
    result.accepted, result.refused = load.accepted, sum(load.refused.values())
    result.accept_rate = load.accepted / load.elapsed
    result.p50_ms, result.p99_ms = load.percentile(0.5) * 1000, load.percentile(0.99) * 1000
    result.e2e_rate = n / (seen - started) if seen else None
    result.cpu_per_1k = {
        role: (cpu_after[role] - cpu_before.get(role, 0.0)) * 1000 / n for role in cpu_after
    }


def steady(
    deployment: Deployment,
    api: ApiWatcher,
    result: Result,
    args: argparse.Namespace,
    factory: MessageFactory,
) -> None:
    rate, seconds = args.steady_rate, args.steady_seconds
    print(f"{result.name}: steady {rate:g} msgs/s for {seconds:g} s", flush=True)
    accepted = asyncio.run(
        paced(deployment.smtp_port, factory, STEADY_BASE, rate, seconds, args.connections)
    )
    last = max(accepted, default=None)
    if last is not None:
        api.wait_seen(last, 60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(i not in api.seen for i in accepted):
        time.sleep(0.05)
    delays = [(api.seen[i] - at) * 1000 for i, at in accepted.items() if i in api.seen]
    result.steady_sent = len(accepted)
    result.steady_missing = len(accepted) - len(delays)
    result.steady_p50_ms, result.steady_p99_ms = pct(delays, 0.5), pct(delays, 0.99)


def stall(deployment: Deployment, api: ApiWatcher, result: Result) -> None:
    print(f"{result.name}: stall test (20,000 parts, then a normal message)", flush=True)
    port = deployment.smtp_port
    bomb = many_parts(STALL_BASE)
    normal = MessageFactory(f"stall{uuid.uuid4().hex[:6]}", 0).build(STALL_BASE + 1)

    async def both() -> tuple[tuple[float, float], tuple[float, float]]:
        first = await send_one(port, b"bomb@customer.example", b"help-desk@example.com", bomb)
        second = await send_one(port, *normal)
        return first, second

    (_, bomb_latency), (normal_at, normal_latency) = asyncio.run(both())
    visible = api.wait_seen(STALL_BASE + 1, 60)
    result.stall_bomb_250_ms = bomb_latency * 1000
    result.stall_250_ms = normal_latency * 1000
    result.stall_visible_ms = (visible - normal_at) * 1000 if visible else math.nan


def fmt(value: float | None, spec: str = ".0f") -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, spec)
    )


def report(results: list[Result], args: argparse.Namespace) -> None:
    sink_result = results[0]
    print()
    print(
        f"{args.messages} messages (~5 KB, 1 in 10 with a 100 KB attachment), "
        f"{args.connections} connections, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    head = (
        f"{'target':<18} {'accept/s':>8} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'e2e/s':>7} {'steady p50':>10} {'steady p99':>10} {'stall 250':>9} "
        f"{'stall tkt':>9} {'src/s':>6} {'src e2e':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        ratio = r.accept_rate / sink_result.accept_rate if sink_result.accept_rate else math.nan
        print(
            f"{r.name:<18} {r.accept_rate:>8.0f} {ratio:>6.2f} {r.p50_ms:>7.1f} {r.p99_ms:>7.1f} "
            f"{fmt(r.e2e_rate):>7} {fmt(r.steady_p50_ms):>10} {fmt(r.steady_p99_ms):>10} "
            f"{fmt(r.stall_250_ms):>9} {fmt(r.stall_visible_ms):>9} "
            f"{fmt(r.smtp_source_rate):>6} {fmt(r.smtp_source_e2e):>7}"
        )
    for r in results[1:]:
        rss = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r.peak_rss_mib.items()))
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r.cpu_per_1k.items()) if v > 0.005)
        print(f"{r.name}: peak RSS MiB: {rss}")
        print(f"{r.name}: CPU s per 1,000 messages (burst): {cpu}")
        print(
            f"{r.name}: refused {r.refused}; steady: {r.steady_sent} sent, "
            f"{r.steady_missing} not seen; stall: the 20,000-part message got its 250 in "
            f"{fmt(r.stall_bomb_250_ms)} ms; exit codes {r.exit_codes}; one API poll "
            f"took {fmt(r.api_poll_ms, '.1f')} ms (median)"
        )
        if r.profile:
            print(f"--- where the worker's time goes ({r.name}, py-spy, CPU samples)")
            print(r.profile)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--database-url", action="append", default=None)
    parser.add_argument("--modes", default="serve,split")
    parser.add_argument("--steady-rate", type=float, default=300.0)
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--smtp-source", type=int, default=0, metavar="N")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sink:
        return run_sink()
    specs = args.database_url or ["sqlite"] + (
        [PG_DEFAULT] if postgres_reachable(PG_DEFAULT) else []
    )
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    OUT_DIR.mkdir(exist_ok=True)
    factory = MessageFactory(uuid.uuid4().hex[:8], 0)
    results = [run_sink_target(args, factory)]
    with tempfile.TemporaryDirectory(prefix="hd-bench-") as tmp:
        for spec in specs:
            for mode in modes:
                workdir = Path(tmp) / f"{mode}-{len(results)}"
                # Each deployment gets messages it has not seen (unique Message-IDs).
                factory = MessageFactory(uuid.uuid4().hex[:8], 0)
                results.append(run_deployment(mode, spec, workdir, args, factory))
    report(results, args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (OUT_DIR / f"intake-{stamp}.json").write_text(
        json.dumps({"args": vars(args), "results": [asdict(r) for r in results]}, indent=2)
    )
    return 0 if all(r.refused == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
