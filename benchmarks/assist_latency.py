"""Benchmark: live-assist turn latency, throughput and memory per session over HTTP against a real uvicorn server.

Starts `kefu serve` on 127.0.0.1 over a synthetic knowledge base (default 10,000 scripts: the bundled 166
scenarios and regional variants of them), then drives it with a lean keep-alive HTTP/1.1 client:
- paced calls: each live call sends its next turn every ~INTERVAL s (a real conversation), 10 → 1,000 calls;
- 50 calls offered 300 turns/s, and 50 calls in a closed loop (saturation: the throughput ceiling).
Baseline measured in the same run and the same way: GET /healthz (the HTTP stack without the engine).
Memory: the server's RSS growth per live session, and the engine's allocations per session (tracemalloc).
Every loop is bounded by a duration; only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REGIONS = ["北京", "天津", "河北", "山西", "江苏", "浙江", "安徽", "福建", "山东", "河南", "湖北", "湖南", "四川",
           "重庆", "陕西", "甘肃", "辽宁", "吉林", "黑龙江", "上海", "江西", "青海", "宁夏", "新疆", "西藏", "蒙东",
           "冀北"]
OPENING = "您好，国家电网95598，工号1024，很高兴为您服务。"


def bundled() -> list[dict]:
    path = REPO / "knowledge_base" / "data" / "scripts.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def make_scripts(n: int) -> list[dict]:
    """n scripts: the bundled ones, then regional variants (scenario, questions and script mention the region)."""
    base = bundled()
    out = []
    for i in range(n):
        b = base[i % len(base)]
        v = i // len(base)
        if v == 0:
            out.append(dict(b))
            continue
        region = REGIONS[v % len(REGIONS)] + ("" if v < len(REGIONS) else str(v // len(REGIONS)))
        out.append({**b, "id": f"B{i:05d}", "scenario": f"{b['scenario']}（{region}）",
                    "questions": [f"{region}这边{q}" for q in b["questions"]],
                    "script": f"{region}供电公司：{b['script']}"})
    return out


def ensure_kb(kb_dir: Path, n: int, index_config: dict | None = None) -> float:
    """Build the benchmark knowledge base unless it is there already; returns the build seconds (0 if reused)."""
    marker = kb_dir / f".bench-{n}"
    if marker.exists():
        return 0.0
    from knowledge_base.kb import KnowledgeBase
    from knowledge_base.schema import Script

    rows = make_scripts(n)
    scripts = [Script(id=r["id"], scenario=r["scenario"], questions=r["questions"], script=r["script"],
                      category=r.get("category", ""), keywords=r.get("keywords", []), tags=r.get("tags", []))
               for r in rows]
    t0 = time.perf_counter()
    with KnowledgeBase.open(kb_dir, create=True, index_config=index_config) as kb:
        kb.import_scripts(scripts, source="benchmark")
    marker.write_text("ok", encoding="utf-8")
    return time.perf_counter() - t0


def make_calls(n: int, seed: int = 7) -> list[list[tuple[str, str]]]:
    """n call scripts of 8 turns: opening, a customer question, the agent reading the script, a follow-up…"""
    rng = random.Random(seed)
    base = bundled()
    calls = []
    for _ in range(n):
        s = rng.choice(base)
        q = rng.sample(s["questions"], 2)
        calls.append([("agent", OPENING), ("customer", q[0]), ("agent", s["script"][:60]), ("customer", q[1]),
                      ("agent", "好的，我这边马上为您登记，请您保持电话畅通。"),
                      ("customer", "好的 那大概多久能处理好"),
                      ("agent", s["script"][60:120] or "请您稍等。"), ("customer", "好的谢谢")])
    return calls


class Conn:
    """One keep-alive HTTP/1.1 connection with the least client overhead (so the client does not eat the CPU)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def drive(port: int, n_calls: int, duration: float, interval: float | None, prefix: str,
                health: bool = False, pool_size: int = 256) -> dict:
    """n_calls calls for `duration` s; each sends a turn every ~interval s (None: closed loop, no pause)."""
    calls = make_calls(n_calls, seed=hash(prefix) & 0xFFFF)
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    conns = [Conn("127.0.0.1", port) for _ in range(min(n_calls, pool_size))]
    for c in conns:
        pool.put_nowait(c)
    lat: list[float] = []
    errors = 0
    t_start = time.perf_counter()
    stop = t_start + duration

    async def call(i: int) -> None:
        nonlocal errors
        rng = random.Random(i)
        turns = calls[i]
        k = 0
        next_at = time.perf_counter() + (rng.uniform(0, interval) if interval else 0.0)
        while True:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += interval * rng.uniform(0.5, 1.5)
            if time.perf_counter() >= stop:
                return
            role, text = turns[k % len(turns)]
            k += 1
            t0 = time.perf_counter()
            conn = await pool.get()
            try:
                if health:
                    status, _ = await conn.request("GET", "/healthz")
                else:
                    body = json.dumps({"role": role, "text": text}, ensure_ascii=False).encode()
                    status, _ = await conn.request("POST", f"/v1/calls/{prefix}-{i}/turns", body)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                status = 599
                conn.close()
                conn = Conn("127.0.0.1", port)
            finally:
                pool.put_nowait(conn)
            lat.append((time.perf_counter() - t0) * 1000.0)
            if status != 200:
                errors += 1

    await asyncio.gather(*(call(i) for i in range(n_calls)))
    elapsed = time.perf_counter() - t_start
    for c in conns:
        c.close()
    return {"n": len(lat), "rate": len(lat) / elapsed, "p50": pct(lat, 0.5), "p90": pct(lat, 0.9),
            "p99": pct(lat, 0.99), "max": max(lat) if lat else float("nan"), "errors": errors}


def tree(pid: int) -> list[int]:
    """pid and all its descendants (uvicorn's worker processes)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by the server: the process and its workers."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def measured(pid: int, coro_factory) -> dict:
    """Run one load; add the server's CPU milliseconds per request (independent of what else runs here)."""
    c0 = cpu_s(pid)
    result = asyncio.run(coro_factory())
    result["cpu_ms"] = (cpu_s(pid) - c0) * 1000.0 / max(1, result["n"])
    return result


def rss_kb(pid: int) -> int:
    """Resident memory of the server process and its workers, in KiB."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(kb_dir: Path, home: Path, workers: int) -> Iterator[tuple[int, int]]:
    """`kefu serve` on a free loopback port; yields (port, pid of the server process, parent of any workers)."""
    import httpx

    port = free_port()
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "KEFU_HOME": str(home), "KEFU_API_KEYS": "", "PYTHONPATH": path}
    proc = subprocess.Popen([sys.executable, "-m", "kefu", "-q", "serve", "--kb", str(kb_dir), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", str(workers), "--max-sessions", "50000"],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                if r.status_code == 200 and r.json()["index"] == "loaded":
                    time.sleep(1.0 if workers > 1 else 0.0)  # let every worker load the index
                    yield port, proc.pid
                    return
            if time.monotonic() > deadline:
                raise SystemExit("server did not load the index within 300 s")
            time.sleep(0.25)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def engine_bytes_per_session(kb_dir: Path, n: int = 500) -> float:
    """Allocations held by n finished 8-turn sessions of the real engine (caches warmed first), per session."""
    from assist.factory import build_engine
    from assist.service.reload import KbIndexSource
    from assist.sessions import SessionStore

    engine = build_engine(kb_dir=kb_dir, log_gaps=False)
    source = KbIndexSource(kb_dir)
    engine.set_retriever(source.load(), source.version())
    calls = make_calls(n, seed=11)
    warm = SessionStore(n + 1)
    for i, turns in enumerate(calls):  # warm the engine's script caches with the same texts
        s, _ = warm.get_or_create(f"w{i}")
        for role, text in turns:
            engine.process(s, role, text)
    store = SessionStore(n + 1)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i, turns in enumerate(calls):
        s, _ = store.get_or_create(f"c{i}")
        for role, text in turns:
            engine.process(s, role, text)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", type=int, default=10_000, help="knowledge-base size")
    parser.add_argument("--kb", type=Path, default=None, help="KB dir to build or reuse (default: under $KEFU_HOME)")
    parser.add_argument("--levels", default="10,50,100,300,1000", help="concurrent calls, comma-separated")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between a call's turns (paced)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--dense", choices=("auto", "flat", "hnsw"), default="auto",
                        help="dense index kind when the KB is built (auto: the index's own choice)")
    args = parser.parse_args()
    home = Path(os.environ.get("KEFU_HOME") or REPO / "var")
    suffix = "" if args.dense == "auto" else f"-{args.dense}"
    kb_dir = args.kb or home / "bench" / f"assist-kb-{args.scripts}{suffix}"
    built = ensure_kb(kb_dir, args.scripts, None if args.dense == "auto" else {"dense": {"kind": args.dense}})
    print(f"knowledge base: {kb_dir} ({args.scripts} scripts{f', built in {built:.0f} s' if built else ', reused'})")
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, server(kb_dir, Path(tmp), args.workers) as (port, pid):
        asyncio.run(drive(port, 20, 2.0, None, "warm"))  # warm caches and connections
        rss0 = rss_kb(pid)
        base = measured(pid, lambda: drive(port, 50, args.duration, 50 / 300, "health", health=True))
        rows.append(("baseline GET /healthz, 50 calls @300/s", base, None))
        target = measured(pid, lambda: drive(port, 50, args.duration, 50 / 300, "t300"))
        rows.append(("turns, 50 calls @300 turns/s", target, None))
        sat = measured(pid, lambda: drive(port, 50, args.duration, None, "sat"))
        rows.append(("turns, 50 calls closed loop (max)", sat, None))
        live = 20 + 50 + 50
        for n in levels:
            r = measured(pid, lambda n=n: drive(port, n, max(args.duration, 2 * args.interval), args.interval,
                                                 f"p{n}"))
            live += n
            rows.append((f"turns, {n} calls @1 per {args.interval:g}s", r, (rss_kb(pid) - rss0) / max(1, live)))
        rss_end = rss_kb(pid)
    per_session = engine_bytes_per_session(kb_dir)
    print(f"\nserver pid {pid}, workers {args.workers}; RSS (all processes) after warm-up {rss0 / 1024:.0f} MiB, "
          f"at the end {rss_end / 1024:.0f} MiB with ~{live} live sessions\n")
    print(f"{'load':44} {'turns':>7} {'turns/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'err':>4} {'cpu ms':>6} {'KB/sess':>8}")
    for name, r, mem in rows:
        m = f"{mem:8.1f}" if mem is not None else " " * 8
        print(f"{name:44} {r['n']:7d} {r['rate']:8.1f} {r['p50']:7.2f} {r['p90']:7.2f} {r['p99']:7.2f} "
              f"{r['max']:7.1f} {r['errors']:4d} {r['cpu_ms']:6.2f} {m}")
    print(f"\nratio of medians, turn (50 calls @300/s) / baseline: {target['p50'] / base['p50']:.2f}")
    print(f"server CPU per turn {sat['cpu_ms']:.2f} ms (closed loop) → about {1000 / sat['cpu_ms']:.0f} turns/s "
          f"per fully available core; baseline request {base['cpu_ms']:.2f} ms")
    try:
        import httptools  # noqa: F401
        http = "httptools"
    except ImportError:
        http = "h11 (pip install httptools uvloop: faster)"
    print(f"uvicorn HTTP parser in this environment: {http}")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"engine allocations per finished 8-turn session (tracemalloc): {per_session / 1024:.1f} KB")
    print("targets: p50 <= 10 ms and p99 <= 50 ms with 50 concurrent calls; >= 300 turns/s; <= 50 KB per session")


if __name__ == "__main__":
    main()
