"""Load test: N concurrent clients of search + ask against a local server vs the same calls in-process.

    python benchmarks/bench_api_load.py --chunks 10000 --clients 16 --seconds 60 [--workers 1,2]
        [--embedder e5]

Builds (once, cached under --home) a KB of synthetic Chinese policy text with the test
HashEmbedder (instant, so the numbers measure the service, not the model; ``--embedder e5``:
the default multilingual-e5-small, as served), then runs the same mix of calls for --seconds
each: in-process (threads calling Retriever.search and Asker.ask, alone and on pools of one
thread and of one per core), then over HTTP (asyncio clients against `uvicorn` in a child
process), once per worker count. Asks are extractive (no LLM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))

TOPICS = ["年假", "报销", "出差", "考勤", "加班", "社保", "公积金", "培训", "招聘", "离职",
          "合同", "保密", "VPN", "邮箱", "会议室", "打印机", "门禁", "食堂", "班车", "体检"]  # fmt: skip
ACTIONS = ["申请", "审批", "登记", "报备", "核对", "归档", "发放", "续签", "变更", "撤销"]


def paragraph(rng: random.Random, i: int) -> str:
    t, a = rng.choice(TOPICS), rng.choice(ACTIONS)
    days, money = rng.randint(1, 30), rng.randint(50, 5000)
    return (
        f"## 第{i}条 {t}{a}规定\n\n员工办理{t}{a}时，应在{days}个工作日内通过星云OA提交材料，"
        f"由部门负责人审核后转人力资源部复核。涉及费用的，单次金额不超过{money}元的由部门负责人"
        f"审批，超过{money}元的需分管副总审批。{t}相关的原始凭证须保存至少{days}个月，"
        f"逾期未{a}的视为自动放弃。如有疑问请联系内线{1000 + i % 9000}。"
    )


def make_embedder(kind: str):
    """The test HashEmbedder (pure Python, instant), or the default e5 with its ONNX query model
    prepared (int8 on VNNI, else fp32), as a server prepares it in the background."""
    if kind == "hash":
        from tests.fakes import HashEmbedder

        return HashEmbedder()
    from kbqa.config import Settings
    from kbqa.embed.factory import load_embedder

    s = Settings()
    embedder = load_embedder(s.embedding_model, s.embed_config()).load()
    embedder.prepare_queries()
    return embedder


def build(home: Path, chunks: int, kind: str) -> None:
    from kbqa.config import IngestConfig, SplitConfig
    from kbqa.kb import KnowledgeBase, kb_exists

    if kb_exists(home, "load"):
        return
    src = home.parent / "load-src"
    src.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    per_file = 100
    for f in range(max(1, chunks // per_file)):
        text = "\n\n".join(paragraph(rng, f * per_file + i) for i in range(per_file))
        (src / f"制度{f:04d}.md").write_text(f"# 制度汇编 {f}\n\n{text}\n", encoding="utf-8")
    embedder = make_embedder(kind)
    spec = "test" if kind == "hash" else "default"
    kb = KnowledgeBase.open_or_create(home, "load", embedder, spec, SplitConfig())
    started = time.monotonic()
    report = kb.ingest([src], embedder, IngestConfig())
    print(
        f"built KB: {report.chunks_added} chunks in {time.monotonic() - started:.0f} s", flush=True
    )


def questions(n: int = 200) -> list[str]:
    rng = random.Random(11)
    return [f"{rng.choice(TOPICS)}{rng.choice(ACTIONS)}需要谁审批？" for _ in range(n)]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


# Each client alternates search and ask (with an even client count, "i % 2" would give every
# client one kind for the whole run, and the in-process run, where searches are cheap, a
# different mix from the HTTP one).


def summary(lat: dict[str, list[float]], errors: int, seconds: float) -> dict:
    out = {"errors": errors, "requests_per_s": round(sum(map(len, lat.values())) / seconds, 1)}
    for kind, values in lat.items():
        out[kind] = {
            "n": len(values), "rps": round(len(values) / seconds, 1),
            "p50_ms": round(pct(values, 0.50), 1), "p95_ms": round(pct(values, 0.95), 1),
            "p99_ms": round(pct(values, 0.99), 1),
        }  # fmt: skip
    return out


def in_process(
    home: Path, clients: int, seconds: float, threads: int | None = None, embedder=None
) -> dict:
    """``clients`` threads calling kbqa directly; with ``threads``, they hand each call to a
    pool of that many threads (the service's shape: kbqa.api.deps.run_query)."""
    from kbqa.ask import Asker
    from kbqa.config import Settings
    from kbqa.kb import KnowledgeBase
    from kbqa.prompt import load_prompts
    from kbqa.retrieval.retriever import Retriever

    s, embedder = Settings(home=home), embedder or make_embedder("hash")
    kb = KnowledgeBase.open(home, "load")
    retriever = Retriever(kb, embedder, s.retrieve_config())
    asker = Asker(kb, embedder, None, load_prompts(), s.ask_config())
    qs = questions()
    asker.ask(qs[0])  # warm-up: index load, refusal calibration, jieba dictionary
    lat: dict[str, list[float]] = {"search": [], "ask": []}
    errors = [0]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    work = ThreadPoolExecutor(threads) if threads else None

    def call(kind: str, q: str) -> object:
        return retriever.search(q, 5) if kind == "search" else asker.ask(q)

    def worker(w: int) -> None:
        i = w
        while time.monotonic() < stop:
            kind = "search" if (i // clients + w) % 2 == 0 else "ask"
            q = qs[i % len(qs)]
            t = time.perf_counter()
            try:
                work.submit(call, kind, q).result() if work else call(kind, q)
                with lock:
                    lat[kind].append(time.perf_counter() - t)
            except Exception:  # noqa: BLE001 - counted, like an HTTP error
                errors[0] += 1
            i += clients

    started, cpu = time.monotonic(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    out = summary(lat, errors[0], time.monotonic() - started)
    out["cpu_ms_per_request"] = per_request(time.process_time() - cpu, lat)
    if work:
        work.shutdown()
    return out


def per_request(cpu_s: float, lat: dict[str, list[float]]) -> float:
    return round(cpu_s * 1000 / max(1, sum(map(len, lat.values()))), 2)


async def over_http(url: str, clients: int, seconds: float, server_cpu) -> dict:
    # aiohttp: the lightest client at hand, since it shares the machine's cores with the server.
    import aiohttp

    qs = questions()
    lat: dict[str, list[float]] = {"search": [], "ask": []}
    errors = 0
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:
        async with session.post("/v1/kbs/load/ask", json={"question": qs[0]}) as r:  # warm-up
            await r.read()
        stop = time.monotonic() + seconds

        async def worker(w: int) -> None:
            nonlocal errors
            i = w
            while time.monotonic() < stop:
                kind = "search" if (i // clients + w) % 2 == 0 else "ask"
                q = qs[i % len(qs)]
                body = {"query": q, "top_k": 5} if kind == "search" else {"question": q}
                t = time.perf_counter()
                try:
                    async with session.post(f"/v1/kbs/load/{kind}", json=body) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                if ok:
                    lat[kind].append(time.perf_counter() - t)
                else:
                    errors += 1
                i += clients

        started, cpu, server = time.monotonic(), time.process_time(), server_cpu()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        out = summary(lat, errors, time.monotonic() - started)
        # Where the 2 cores went: the server's CPU and the load generator's, per request.
        out["server_cpu_ms_per_request"] = per_request(server_cpu() - server, lat)
        out["client_cpu_ms_per_request"] = per_request(time.process_time() - cpu, lat)
    return out


def make_app():
    """The app over the KB in $BENCH_HOME (an import string, so uvicorn can fork workers)."""
    from kbqa.api.app import create_app
    from kbqa.config import Settings

    home = Path(os.environ["BENCH_HOME"])
    embedder = make_embedder(os.environ["BENCH_EMBEDDER"])
    return create_app(Settings(home=home), embedder=embedder, generator=None)


def serve(home: Path, port: int, workers: int, kind: str, plain: bool = False) -> None:
    import uvicorn

    os.environ["BENCH_HOME"], os.environ["BENCH_EMBEDDER"] = str(home), kind
    # httptools + uvloop when installed (uvicorn[standard]); ``plain``: h11 + asyncio, what
    # uvicorn uses without them.
    impl = {"http": "h11", "loop": "asyncio"} if plain else {}
    uvicorn.run(
        "benchmarks.bench_api_load:make_app", factory=True, workers=workers, host="127.0.0.1",
        port=port, log_level="warning", access_log=False, **impl,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen) -> None:
    import httpx

    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", type=Path, help="KB home [benchmarks/out/api_load/CHUNKS]")
    p.add_argument(
        "--workers", default="1",
        help="uvicorn worker processes, or a list such as 1,2 for one HTTP phase each (>1: read "
        "replicas on one host; uploads need one writer)",
    )  # fmt: skip
    p.add_argument("--chunks", type=int, default=10_000)
    p.add_argument(
        "--embedder", choices=("hash", "e5"), default="hash",
        help="hash: the test HashEmbedder (the service's own cost); e5: the default model, as "
        "served (its ONNX query model releases the interpreter lock while it embeds)",
    )  # fmt: skip
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument(
        "--rounds", type=int, default=1,
        help="alternate the pooled in-process phases and the HTTP phases this many times; the "
        "ratios are taken within each round (the VM's speed drifts between minutes)",
    )  # fmt: skip
    p.add_argument(
        "--plain-http", action="store_true",
        help="serve with h11 + asyncio (uvicorn without httptools/uvloop), not what is installed",
    )  # fmt: skip
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # child process: the server
    args = p.parse_args()
    folder = str(args.chunks) if args.embedder == "hash" else f"e5-{args.chunks}"
    args.home = args.home or ROOT / "benchmarks" / "out" / "api_load" / folder
    if args.serve:
        serve(args.home, args.serve, int(args.workers), args.embedder, args.plain_http)
        return
    build(args.home, args.chunks, args.embedder)
    result = {"clients": args.clients, "seconds": args.seconds, "embedder": args.embedder,
              "cpus": os.cpu_count(), "load_avg_before": os.getloadavg()[0]}  # fmt: skip
    cores = os.cpu_count() or 2
    counts = [int(w) for w in args.workers.split(",")]
    embedder = make_embedder(args.embedder)
    result["in_process"] = in_process(args.home, args.clients, args.seconds, None, embedder)
    rounds: list[dict] = []
    with ExitStack() as stack:
        # Every server starts once and idles while the others are measured.
        servers = {w: stack.enter_context(server(args, w)) for w in counts}
        for _ in range(args.rounds):
            # A pool of one thread per core, and of one thread: where every call holds the
            # interpreter lock (HashEmbedder), one thread fights no one for it and is faster.
            one = {
                f"in_process_{t}": in_process(args.home, args.clients, args.seconds, t, embedder)
                for t in sorted({1, cores}, reverse=True)
            }
            for w, (url, cpu) in servers.items():
                one[f"http_{w}"] = asyncio.run(over_http(url, args.clients, args.seconds, cpu))
            rounds.append(one)
    for phase in rounds[0]:  # each phase as in its median round
        runs = sorted((r[phase] for r in rounds), key=lambda r: r["requests_per_s"])
        result[phase] = runs[len(runs) // 2]
    result["rounds"] = rounds
    result["load_avg_after"] = os.getloadavg()[0]
    print(table(result, args))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "api_load.json").write_text(json.dumps(result, indent=2), encoding="utf-8")


@contextmanager
def server(args: argparse.Namespace, workers: int) -> Iterator[tuple[str, Callable[[], float]]]:
    """A server in a child process: its URL, and its CPU seconds so far (with its workers)."""
    import psutil

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--home", str(args.home), "--serve", str(port),
         "--workers", str(workers), "--embedder", args.embedder,
         *(["--plain-http"] if args.plain_http else [])], cwd=ROOT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_up(url, proc)
        root = psutil.Process(proc.pid)

        def server_cpu() -> float:
            procs = [root, *root.children(recursive=True)]
            return sum(sum(p.cpu_times()[:2]) for p in procs)

        yield url, server_cpu
    finally:
        proc.terminate()
        proc.wait(10)


EMBEDDERS = {"hash": "HashEmbedder", "e5": "multilingual-e5-small, as served"}


def best_in_process(phases: dict) -> float:
    return max(v["requests_per_s"] for k, v in phases.items() if k.startswith("in_process"))


def table(result: dict, args: argparse.Namespace) -> str:
    phases = [k for k in result if k.startswith(("in_process", "http_"))]
    base = best_in_process(result)
    rounds = result["rounds"]
    rows = [
        f"KB: {args.chunks} chunks ({EMBEDDERS[args.embedder]}), {args.clients} clients alternating search "
        f"(top_k 5) and ask (extractive), {args.seconds:g} s per phase, load average before "
        f"{result['load_avg_before']:.1f}"
        + (f"; {len(rounds)} rounds, each phase as in its median round" if len(rounds) > 1 else ""),
        "",
        "| phase | req/s | vs best in-process | search p50 / p95 / p99 ms | ask p50 / p95 / p99 ms "
        "| errors | CPU ms per request |",
        "|---|---:|---:|---|---|---:|---|",
    ]
    for phase in phases:
        r = result[phase]
        if phase == "in_process":
            name, cpu = f"in-process, {args.clients} threads", f"{r['cpu_ms_per_request']}"
        elif phase.startswith("in_process_"):
            n = phase.removeprefix("in_process_")
            name = f"in-process, {args.clients} callers on {n} thread{'s' if n != '1' else ''}"
            cpu = f"{r['cpu_ms_per_request']}"
        else:
            n = int(phase.removeprefix("http_"))
            name = f"HTTP, {n} uvicorn worker{'s' if n > 1 else ''}"
            cpu = (
                f"server {r['server_cpu_ms_per_request']}, client {r['client_cpu_ms_per_request']}"
            )
        lat = [
            " / ".join(str(r[k][p]) for p in ("p50_ms", "p95_ms", "p99_ms"))
            for k in ("search", "ask")
        ]
        rows.append(
            f"| {name} | {r['requests_per_s']} | {r['requests_per_s'] / base:.2f}x | {lat[0]} "
            f"| {lat[1]} | {r['errors']} | {cpu} |"
        )
    if len(rounds) > 1:
        for phase in (k for k in rounds[0] if k.startswith("http_")):
            ratios = sorted(r[phase]["requests_per_s"] / best_in_process(r) for r in rounds)
            each = ", ".join(f"{x:.2f}x" for x in ratios)
            rows += ["", f"{phase} / the round's best in-process shape: {each} (median "
                     f"{ratios[len(ratios) // 2]:.2f}x)"]  # fmt: skip
    rows += [
        "",
        "Goals: 0 errors; HTTP (one server process) >= 0.9x in-process; search p95 <= 100 ms.",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
