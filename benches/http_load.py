"""A bounded load test of the HTTP service (loopback only, stops by itself):

    python benches/http_load.py                      # memory:, 50 clients, 30 s
    ./scripts/databases run -- python benches/http_load.py postgres
    python benches/http_load.py memory: --clients 20 --seconds 10 --serve target/release/examples/serve

It builds the `serve` example in release (unless --serve names a binary),
starts it on 127.0.0.1 with a simulated month (so that the views have
something to show), registers --prosumers members of its own, then runs
--clients concurrent clients for --seconds. Each client, one request after
the other, picks at random:

* ``json``      a batch of 24 readings as application/json
* ``csv``       a batch of 96 readings as text/csv
* ``bad-json``  a JSON batch with one bad row (negative energy, an unknown
                member, a start off the timeframe grid, a string for a
                number): must be rejected with a 4xx as a whole
* ``bad-csv``   a CSV batch with one bad row (not a number, a missing field)
* ``daily``, ``grid``, ``trades``, ``prosumer``, ``bills``  the views of the
                simulated month

Every reading belongs to a (member, timeframe) slot used once. Afterwards it
clears the load's range and reads every load member's timeframes back
through the API: each reading acknowledged with a 2xx must be there exactly
once with its values, each reading of a rejected batch must be absent, and
no request may have failed (5xx or a transport error). It prints
requests/s and p50/p99 latency per kind, the CPU time serve and the client
used (near 100 % of a core for the client, the client limits the rate
rather than the server), then PASS or FAIL (exit status 0 or 1).

`postgres` as the store means MICROGRID_TEST_POSTGRES_URL (set by
scripts/databases) with a schema of its own. The client is aiohttp on
asyncio (one process): it shares the machine with the server, so the
figures are the pair's, measured from the client.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
UTC = dt.timezone.utc
TIMEFRAME = dt.timedelta(minutes=15)
LOAD_START = dt.datetime(2026, 1, 1, tzinfo=UTC)
JSON_BATCH = 24
CSV_BATCH = 96
WEIGHTS = {
    "json": 38,
    "csv": 10,
    "bad-json": 7,
    "bad-csv": 5,
    "daily": 12,
    "grid": 8,
    "trades": 8,
    "prosumer": 8,
    "bills": 4,
}
POSTS = {"json", "csv", "bad-json", "bad-csv"}


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# ------------------------------------------------------------- the server --

_URL = re.compile(r"(http://127\.0\.0\.1:\d+)/[?#]key=([^&\s]+)&start=([0-9-]+)&end=([0-9-]+)")
_OPERATOR = re.compile(r"operator key\W*([A-Za-z0-9_\-.~+/=]{16,})", re.I)


@dataclass
class Server:
    process: subprocess.Popen
    log: Path
    base: str
    key: str
    start: str
    end: str


def build() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    print("building serve (release)...", flush=True)
    subprocess.run(
        ["cargo", "build", "--quiet", "--release", "--example", "serve", "--features", "server,postgres"],
        cwd=ROOT,
        check=True,
    )
    return target / "release" / "examples" / "serve"


def start_server(binary: Path, store: str, simulate: int, workdir: Path) -> Server:
    log = workdir / "serve.log"
    out = open(log, "w")
    proc = subprocess.Popen(
        [str(binary), store, "--listen", "127.0.0.1:0", "--simulate", str(simulate)],
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        url, op = _URL.search(text), _OPERATOR.search(text)
        if url and op:
            return Server(proc, log, url.group(1), op.group(1), url.group(3), url.group(4))
        if proc.poll() is not None:
            sys.exit(f"serve exited with {proc.returncode}:\n{text}")
        time.sleep(0.2)
    proc.kill()
    sys.exit(f"serve did not start:\n{log.read_text(errors='replace')}")


# ---------------------------------------------------------------- the load --


@dataclass
class Books:
    """What the clients sent and what the server answered."""

    acked: dict[tuple[str, dt.datetime], tuple[int, int]] = field(default_factory=dict)
    rejected: set[tuple[str, dt.datetime]] = field(default_factory=set)
    unknown: set[tuple[str, dt.datetime]] = field(default_factory=set)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    failures: list[str] = field(default_factory=list)
    report_mismatch: list[str] = field(default_factory=list)


class Slots:
    """Hands out (member, start) slots, each once."""

    def __init__(self, members: list[str], limit: dt.datetime):
        self.members = members
        self.next = {m: 0 for m in members}
        self.turn = 0
        self.limit = limit

    def take(self, n: int) -> tuple[str, list[dt.datetime]] | None:
        for _ in range(len(self.members)):
            m = self.members[self.turn % len(self.members)]
            self.turn += 1
            first = self.next[m]
            starts = [LOAD_START + TIMEFRAME * (first + i) for i in range(n)]
            if starts[-1] + TIMEFRAME <= self.limit:
                self.next[m] = first + n
                return m, starts
        return None

    def end(self) -> dt.datetime:
        return LOAD_START + TIMEFRAME * max(self.next.values())


def readings(rng: random.Random, member: str, starts: list[dt.datetime]) -> list[dict]:
    # consumed_wh is at least 1, so a stored reading is never all zeros.
    return [
        {"prosumer": member, "start": rfc3339(s), "produced_wh": rng.randint(0, 2_500), "consumed_wh": rng.randint(1, 2_500)}
        for s in starts
    ]


def spoil_json(rng: random.Random, rows: list[dict]) -> list[dict]:
    i = rng.randrange(len(rows))
    bad = dict(rows[i])
    how = rng.randrange(4)
    if how == 0:
        bad["produced_wh"] = -rng.randint(1, 100)
    elif how == 1:
        bad["prosumer"] = "nobody-" + uuid.uuid4().hex[:6]
    elif how == 2:
        bad["start"] = rfc3339(parse_time(bad["start"]) + dt.timedelta(minutes=7))
    else:
        bad["consumed_wh"] = "12 Wh"
    return rows[:i] + [bad] + rows[i + 1 :]


def to_csv(rows: list[dict]) -> str:
    lines = ["prosumer,start,produced_wh,consumed_wh"]
    lines += [f"{r['prosumer']},{r['start']},{r['produced_wh']},{r['consumed_wh']}" for r in rows]
    return "\n".join(lines) + "\n"


def spoil_csv(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    i = rng.randrange(1, len(lines))
    fields = lines[i].split(",")
    if rng.randrange(2) == 0:
        fields[2] = "lots"
    else:
        fields = fields[:3]
    lines[i] = ",".join(fields)
    return "\n".join(lines) + "\n"


async def client(
    n: int,
    session: aiohttp.ClientSession,
    server: Server,
    slots: Slots,
    books: Books,
    views: dict,
    stop_at: float,
    seed: int,
) -> None:
    rng = random.Random(seed * 1_000 + n)
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    auth = {"Authorization": f"Bearer {server.key}"}
    while time.monotonic() < stop_at:
        kind = rng.choices(kinds, weights)[0]
        batch: list[dict] = []
        if kind in POSTS:
            taken = slots.take(CSV_BATCH if kind.endswith("csv") else JSON_BATCH)
            if taken is None:
                kind = "daily"
            else:
                batch = readings(rng, *taken)
        if kind == "json":
            req = dict(method="POST", url="/api/v1/readings", json=batch)
        elif kind == "bad-json":
            req = dict(method="POST", url="/api/v1/readings", json=spoil_json(rng, batch))
        elif kind == "csv":
            req = dict(method="POST", url="/api/v1/readings", data=to_csv(batch), headers={"Content-Type": "text/csv"})
        elif kind == "bad-csv":
            req = dict(method="POST", url="/api/v1/readings", data=spoil_csv(rng, to_csv(batch)), headers={"Content-Type": "text/csv"})
        elif kind == "daily":
            req = dict(method="GET", url=f"/api/v1/grid/daily?{views['range']}")
        elif kind == "grid":
            req = dict(method="GET", url=f"/api/v1/grid?{views['range']}&limit=96&offset={96 * rng.randrange(views['days'])}")
        elif kind == "trades":
            req = dict(method="GET", url=f"/api/v1/trades?{views['range']}&limit=200&offset={200 * rng.randrange(10)}")
        elif kind == "prosumer":
            member = rng.choice(views["members"])
            req = dict(method="GET", url=f"/api/v1/prosumers/{member}/daily?{views['range']}")
        else:
            req = dict(method="GET", url=f"/api/v1/bills?{views['range']}")
        headers = {**auth, **req.pop("headers", {})}
        url = server.base + req.pop("url")
        t0 = time.perf_counter()
        try:
            async with session.request(headers=headers, url=url, **req) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            books.latencies[kind].append(time.perf_counter() - t0)
            books.statuses[kind][0] += 1
            books.failures.append(f"{kind}: {type(e).__name__}: {e}")
            for r in batch:
                books.unknown.add((r["prosumer"], parse_time(r["start"])))
            continue
        books.latencies[kind].append(time.perf_counter() - t0)
        books.statuses[kind][status] += 1
        if status >= 500:
            books.failures.append(f"{kind}: {status} {body[:300]!r}")
        if kind in POSTS:
            keys = [(r["prosumer"], parse_time(r["start"])) for r in batch]
            if 200 <= status < 300:
                if kind.startswith("bad"):
                    books.failures.append(f"{kind}: a bad batch was accepted ({status} {body[:200]!r})")
                    books.unknown.update(keys)
                    continue
                report = json.loads(body)
                if report.get("received") != len(batch) or report.get("inserted") != len(batch):
                    books.report_mismatch.append(f"{kind}: {len(batch)} sent, report {report}")
                for r, k in zip(batch, keys):
                    books.acked[k] = (r["produced_wh"], r["consumed_wh"])
            elif 400 <= status < 500:
                if not kind.startswith("bad"):
                    books.failures.append(f"{kind}: a good batch was refused ({status} {body[:300]!r})")
                books.rejected.update(keys)
            else:
                books.unknown.update(keys)
        elif status != 200:
            books.failures.append(f"{kind}: {status} {body[:300]!r}")


# ----------------------------------------------------------- read it back --


async def fetch_all(session: aiohttp.ClientSession, server: Server, path: str) -> list[dict]:
    items: list[dict] = []
    auth = {"Authorization": f"Bearer {server.key}"}
    url: str | None = path
    while url:
        async with session.get(server.base + url, headers=auth) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"GET {url}: {resp.status} {body}")
        items += body["items"]
        url = body.get("next")
    return items


async def verify(session: aiohttp.ClientSession, server: Server, members: list[str], end: dt.datetime, books: Books) -> list[str]:
    problems: list[str] = []
    auth = {"Authorization": f"Bearer {server.key}"}
    end = dt.datetime.combine(end.date() + dt.timedelta(days=1), dt.time(), UTC)
    t0 = time.perf_counter()
    clear = {"start": rfc3339(LOAD_START), "end": rfc3339(end), "mechanism": "sdr"}
    async with session.post(server.base + "/api/v1/clear", json=clear, headers=auth) as resp:
        body = await resp.text()
        if resp.status != 200:
            return [f"clearing the load's range failed: {resp.status} {body[:500]}"]
    print(f"cleared {rfc3339(LOAD_START)}..{rfc3339(end)} in {time.perf_counter() - t0:.1f} s: {body[:200]}")
    t0 = time.perf_counter()
    stored: dict[tuple[str, dt.datetime], list[tuple[int, int]]] = defaultdict(list)
    rng = f"start={rfc3339(LOAD_START)}&end={rfc3339(end)}"
    for m in members:
        for row in await fetch_all(session, server, f"/api/v1/prosumers/{m}/timeframes?{rng}&limit=10000"):
            if row["prosumer"] != m:
                problems.append(f"{m}'s view holds a row of {row['prosumer']}")
            stored[(m, parse_time(row["start"]))].append((row["produced_wh"], row["consumed_wh"]))
    print(f"read back {sum(map(len, stored.values()))} timeframes of {len(members)} members in {time.perf_counter() - t0:.1f} s")
    missing = wrong = twice = 0
    for k, values in books.acked.items():
        got = stored.get(k, [])
        if not got:
            missing += 1
        elif len(got) > 1:
            twice += 1
        elif got[0] != values:
            wrong += 1
    present_rejected = sum(1 for k in books.rejected if any(v != (0, 0) for v in stored.get(k, [])))
    strays = sum(1 for k, v in stored.items() if k not in books.acked and k not in books.unknown and any(x != (0, 0) for x in v))
    if missing:
        problems.append(f"{missing} acknowledged readings are missing")
    if twice:
        problems.append(f"{twice} acknowledged readings are stored more than once")
    if wrong:
        problems.append(f"{wrong} acknowledged readings are stored with other values")
    if present_rejected:
        problems.append(f"{present_rejected} readings of rejected batches are stored")
    if strays:
        problems.append(f"{strays} stored readings were never acknowledged")
    print(
        f"check: {len(books.acked)} acknowledged readings, {len(books.rejected)} rejected, {len(books.unknown)} unknown; "
        f"missing {missing}, duplicated {twice}, wrong {wrong}, rejected present {present_rejected}, strays {strays}"
    )
    return problems


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process so far, from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


async def run(args: argparse.Namespace, server: Server) -> int:
    books = Books()
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=args.clients + 8)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        auth = {"Authorization": f"Bearer {server.key}"}
        members = [f"load-{i:04d}" for i in range(args.prosumers)]
        t0 = time.perf_counter()
        for m in members:
            body = {"id": m, "name": f"Load member {m[5:]}", "kind": "household", "joined": LOAD_START.date().isoformat()}
            async with session.post(server.base + "/api/v1/prosumers", json=body, headers=auth) as resp:
                if resp.status not in (200, 201):
                    sys.exit(f"registering {m}: {resp.status} {await resp.text()}")
        print(f"registered {len(members)} members in {time.perf_counter() - t0:.1f} s")
        sim = [p["id"] for p in await fetch_all(session, server, "/api/v1/prosumers?limit=10000") if not p["id"].startswith("load-")]
        month_start = dt.datetime.fromisoformat(server.start).replace(tzinfo=UTC)
        month_end = dt.datetime.fromisoformat(server.end).replace(tzinfo=UTC)
        views = {
            "range": f"start={rfc3339(month_start)}&end={rfc3339(month_end)}",
            "days": (month_end - month_start).days,
            "members": sim or members,
        }
        slots = Slots(members, min(month_start, dt.datetime(2026, 9, 1, tzinfo=UTC)))
        print(f"{args.clients} clients for {args.seconds} s ...", flush=True)
        began = time.monotonic()
        cpu0 = time.process_time()
        server_cpu0 = cpu_seconds(server.process.pid)
        stop_at = began + args.seconds
        await asyncio.gather(*(client(n, session, server, slots, books, views, stop_at, args.seed) for n in range(args.clients)))
        elapsed = time.monotonic() - began
        cpu = time.process_time() - cpu0
        server_cpu = cpu_seconds(server.process.pid) - server_cpu0
        total = sum(len(v) for v in books.latencies.values())
        print(f"\n{total} requests in {elapsed:.1f} s: {total / elapsed:,.0f} requests/s over all kinds")
        # Near 100 %, the client (one Python process) is what limits the rate.
        print(
            f"CPU: serve {server_cpu:.1f} s ({100 * server_cpu / elapsed:.0f} % of a core), "
            f"the client {cpu:.1f} s ({100 * cpu / elapsed:.0f} %), on {os.cpu_count()} cores\n"
        )
        print(f"{'kind':<10} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  statuses")
        for kind in WEIGHTS:
            lat = books.latencies.get(kind, [])
            if not lat:
                continue
            statuses = " ".join(f"{s}x{c}" for s, c in sorted(books.statuses[kind].items()))
            print(f"{kind:<10} {len(lat):>9} {len(lat) / elapsed:>8.1f} {pct(lat, 50) * 1e3:>8.1f} {pct(lat, 99) * 1e3:>8.1f}  {statuses}")
        posted = sum(len(books.latencies.get(k, [])) for k in POSTS)
        print(f"\nreadings: {len(books.acked)} acknowledged in {posted} posts ({len(books.acked) / elapsed:,.0f} readings/s), {len(books.rejected)} in rejected batches\n")
        problems = list(books.failures[:20])
        if len(books.failures) > 20:
            problems.append(f"... {len(books.failures) - 20} more failed requests")
        problems += books.report_mismatch[:10]
        problems += await verify(session, server, members, slots.end(), books)
    if problems:
        print("FAIL")
        for p in problems:
            print("  " + p)
        return 1
    print("PASS: every acknowledged reading is stored exactly once, every rejected one is absent, no request failed")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store", nargs="?", default="memory:", help="memory: (default), postgres (MICROGRID_TEST_POSTGRES_URL, a new schema) or a store URL")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--prosumers", type=int, default=200, help="members the load posts readings for")
    ap.add_argument("--simulate", type=int, default=20, help="simulated members of the month the views read")
    ap.add_argument("--serve", type=Path, help="a built serve binary (default: build the release example)")
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    store = args.store
    if store == "postgres":
        url = os.environ.get("MICROGRID_TEST_POSTGRES_URL")
        if not url:
            sys.exit("MICROGRID_TEST_POSTGRES_URL is not set: run ./scripts/databases run -- python benches/http_load.py postgres")
        store = f"{url}{'&' if '?' in url else '?'}schema=load_{uuid.uuid4().hex[:10]}"
    binary = args.serve or build()
    with tempfile.TemporaryDirectory(prefix="microgrid-http-load-") as work:
        server = start_server(binary, store, args.simulate, Path(work))
        print(f"serve on {'PostgreSQL' if store.startswith('postgres') else store} at {server.base} (month {server.start}..{server.end})")
        try:
            return asyncio.run(run(args, server))
        finally:
            server.process.terminate()
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.process.kill()


if __name__ == "__main__":
    sys.exit(main())
