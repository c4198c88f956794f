"""Soak test: 16 clients of search, ask and upload over loopback for a bounded time.

    python benchmarks/bench_soak.py --seconds 600 --clients 16 [--chunks 2000]

One server process (uvicorn on 127.0.0.1 only, the app of bench_api_load with the test
HashEmbedder, so the run measures the service, not a model) over a synthetic KB. Each client
loops: mostly search and ask, every tenth call an upload (one of 8 names, new content each
time, so documents are replaced while they are searched). Records the server's RSS every few
seconds, errors (any non-2xx; a 503 from the upload cap is counted apart), p50/p95 per kind,
and at the end waits for every upload job and counts the failed ones as errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_api_load import build, free_port, pct, questions, wait_up  # noqa: E402

OUT = ROOT / "benchmarks" / "out"


async def soak(
    url: str, clients: int, seconds: float, rss, sample_every: float, upload_every: int = 10
) -> dict:
    import aiohttp

    qs = questions()
    lat: dict[str, list[float]] = {"search": [], "ask": [], "upload": []}
    errors = {"search": 0, "ask": 0, "upload": 0, "job_failed": 0, "job_poll": 0, "timeouts": 0}
    busy = 0  # uploads refused with 503 by the concurrent-upload cap (asked to retry)
    jobs: list[str] = []
    timeline: list[tuple[float, float]] = []
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        stop = started + seconds

        async def sampler() -> None:
            while time.monotonic() < stop:
                timeline.append((round(time.monotonic() - started, 1), rss()))
                await asyncio.sleep(sample_every)
            timeline.append((round(time.monotonic() - started, 1), rss()))

        async def call(kind: str, i: int) -> int:
            q = qs[i % len(qs)]
            if kind == "upload":
                form = aiohttp.FormData()
                text = f"# 临时通知 {i}\n\n第{i}号通知：{q} 请于{i % 28 + 1}日前完成。\n"
                form.add_field("files", text.encode(), filename=f"通知{i % 8}.md")
                async with session.post("/v1/kbs/load/documents", data=form) as r:
                    body = await r.json() if r.status == 202 else await r.read()
                    if r.status == 202:
                        jobs.append(body["id"])
                    return r.status
            body = {"query": q, "top_k": 5} if kind == "search" else {"question": q}
            async with session.post(f"/v1/kbs/load/{kind}", json=body) as r:
                await r.read()
                return r.status

        async def worker(w: int) -> None:
            nonlocal busy
            i = w
            while time.monotonic() < stop:
                if upload_every and i % upload_every == upload_every - 1:
                    kind = "upload"
                else:
                    kind = "search" if (i // 10 + w) % 2 else "ask"
                t = time.perf_counter()
                try:
                    status = await call(kind, i)
                except asyncio.TimeoutError:
                    status = 0
                    errors["timeouts"] += 1
                except aiohttp.ClientError:
                    status = 0
                if status in (200, 202):
                    lat[kind].append(time.perf_counter() - t)
                elif kind == "upload" and status == 503:
                    busy += 1
                else:
                    errors[kind] += 1
                i += clients

        finished: dict[str, str] = {}

        # Its own connection: the clients' pool is always full.
        poller = aiohttp.ClientSession(url, timeout=timeout)

        async def watch_jobs(until_done: bool) -> None:
            # Polled while the run goes on: the server forgets the oldest finished jobs
            # (kbqa.api.jobs.KEEP_JOBS), and every accepted upload must be seen to end indexed.
            while time.monotonic() < stop or (until_done and len(finished) < len(jobs)):
                for job_id in [j for j in jobs if j not in finished]:
                    try:
                        async with poller.get(f"/v1/jobs/{job_id}") as r:
                            job = await r.json()
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        errors["job_poll"] += 1
                        continue
                    status = job.get("status", f"http {r.status}")
                    if status not in ("queued", "running"):
                        finished[job_id] = status
                await asyncio.sleep(0.5)

        await asyncio.gather(sampler(), watch_jobs(False), *(worker(w) for w in range(clients)))
        elapsed = time.monotonic() - started
        await watch_jobs(True)
        await poller.close()
        # "http 404": the server forgot a finished job (KEEP_JOBS) before the poller saw it end,
        # which says nothing about the job; any other status but done is a failed upload.
        ends = Counter(finished.values())
        errors["job_failed"] = sum(n for st, n in ends.items() if st not in ("done", "http 404"))
        errors["job_unseen"] = ends.get("http 404", 0)
    out = {
        "seconds": round(elapsed, 1),
        "clients": clients,
        "errors": errors,
        "uploads_refused_busy": busy,
        "upload_jobs": len(jobs),
        "rss_mb": timeline,
    }
    for kind, values in lat.items():
        out[kind] = {
            "n": len(values),
            "p50_ms": round(pct(values, 0.50), 1),
            "p95_ms": round(pct(values, 0.95), 1),
            "max_ms": round(max(values, default=0) * 1000, 1),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--seconds", type=float, default=600.0, help="duration [600: the issue's 10 min]"
    )
    p.add_argument("--clients", type=int, default=16)
    p.add_argument(
        "--upload-every", type=int, default=10, help="every Nth call uploads [10; 0: none]"
    )
    p.add_argument("--chunks", type=int, default=2000)
    p.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples")
    p.add_argument("--home", type=Path, help="KB home [benchmarks/out/soak/CHUNKS] (rebuilt)")
    args = p.parse_args()
    import shutil

    import psutil

    home = args.home or OUT / "soak" / str(args.chunks)
    shutil.rmtree(home, ignore_errors=True)  # uploads of an earlier run would change the KB
    build(home, args.chunks)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "bench_api_load.py"), "--home", str(home),
         "--serve", str(port), "--workers", "1"], cwd=ROOT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_up(url, proc)
        server = psutil.Process(proc.pid)

        def rss() -> float:
            return round(server.memory_info().rss / 2**20, 1)

        result = asyncio.run(
            soak(url, args.clients, args.seconds, rss, args.sample, args.upload_every)
        )
    finally:
        proc.terminate()
        proc.wait(10)
    result["load_avg"] = os.getloadavg()[0]
    result["chunks"] = args.chunks
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "soak.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(report(result))


def report(r: dict) -> str:
    rss = [mb for _, mb in r["rss_mb"]]
    warm = rss[len(rss) // 4 :] or rss  # after the first quarter: indexes loaded, pools full
    lines = [
        f"{r['clients']} clients for {r['seconds']:g} s over 127.0.0.1, KB of {r['chunks']} "
        f"chunks; {r['upload_jobs']} upload jobs; load average at the end {r['load_avg']:.1f}",
        "",
        "| kind | requests | p50 ms | p95 ms | max ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in ("search", "ask", "upload"):
        k = r[kind]
        lines.append(
            f"| {kind} | {k['n']} | {k['p50_ms']} | {k['p95_ms']} | {k['max_ms']} "
            f"| {r['errors'][kind]} |"
        )
    lines += [
        "",
        f"upload jobs failed: {r['errors']['job_failed']}; finished but forgotten before the poller "
        f"saw them (KEEP_JOBS): {r['errors'].get('job_unseen', 0)}; uploads refused busy (503, retry): "
        f"{r['uploads_refused_busy']}; client timeouts (60 s): {r['errors']['timeouts']}",
        f"server RSS MB: start {rss[0]}, after warm-up {warm[0]}, max after warm-up {max(warm)}, "
        f"end {rss[-1]}",
        "RSS over time (s: MB): " + ", ".join(f"{t:g}: {mb}" for t, mb in r["rss_mb"]),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
