"""``lossensemble serve`` under load on loopback: latency and throughput at 1, 4 and 16 concurrent clients.

Builds the same 100k-vector index as ``bench_cli_start.py`` (an exact flat index bound to
an exported small_cnn model, ``--image-size`` px), starts ``lossensemble serve INDEX`` in a
child process on 127.0.0.1, waits for ``GET /health``, then runs a bounded load generator
(stdlib ``http.client``, one keep-alive connection per client thread): for each concurrency
level, every client sends ``--requests`` ``POST /search`` requests (a multipart PNG upload,
k = 10) back to back. Reports p50/p99 latency per request, queries/s over the level's wall
time, and errors (any non-200 answer or connection failure). Goal (issue 16): p50 < 25 ms
at 1 client, no errors.

The server and the load generator share the machine's cores: at 16 clients the numbers
include the client threads' own CPU.

    python benchmarks/bench_serve.py            # print the table
    python benchmarks/bench_serve.py --write    # also rewrite the "Serving" section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil  # noqa: E402
from bench_cli_start import make_index  # noqa: E402

BOUNDARY = "lossensemble-bench-boundary"


def multipart(image: bytes, k: int) -> bytes:
    parts = [
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n{k}\r\n".encode(),
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"q.png\"\r\n"
        "Content-Type: image/png\r\n\r\n".encode() + image + b"\r\n",
        f"--{BOUNDARY}--\r\n".encode(),
    ]
    return b"".join(parts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"lossensemble serve exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return time.perf_counter() - t0
        except OSError:
            time.sleep(0.1)
    raise SystemExit("lossensemble serve did not become healthy in time")


def client(port: int, body: bytes, n: int, latencies: list, errors: list) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    for _ in range(n):
        t = time.perf_counter()
        try:
            conn.request("POST", "/search", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            ok = response.status == 200 and len(json.loads(payload)) == 10
        except (OSError, http.client.HTTPException, ValueError) as exc:
            ok = False
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            errors.append(repr(exc))
        latencies.append(time.perf_counter() - t)
        if not ok and not errors:
            errors.append("bad answer")


def run(args) -> str:
    exe = str(Path(sys.executable).with_name("lossensemble"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        index, query = make_index(Path(tmp), args.n, args.image_size)
        body = multipart(query.read_bytes(), 10)
        port = free_port()
        proc = subprocess.Popen([exe, "serve", str(index), "--port", str(port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            startup = wait_healthy(port, proc)
            client(port, body, 5, [], [])  # warm-up
            load_before = benchutil.load_average()
            for clients in args.clients:
                latencies: list[float] = []
                errors: list[str] = []
                threads = [threading.Thread(target=client, args=(port, body, args.requests, latencies, errors))
                           for _ in range(clients)]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wall = time.perf_counter() - t0
                ms = np.asarray(latencies) * 1e3
                rows.append((clients, len(latencies), np.percentile(ms, 50), np.percentile(ms, 99),
                             len(latencies) / wall, len(errors)))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    lines = [
        f"`lossensemble serve` on 127.0.0.1 with an exact flat index of {args.n:,} x 32 vectors bound to an "
        f"small_cnn model exported with `--format onnx` ({args.image_size} px; queries embedded by onnxruntime); each request uploads one PNG and asks for k = 10 "
        f"(`POST /search`); {args.requests} requests per client, one keep-alive connection each. Server start-up "
        f"(process start to a healthy `/health`): {startup:.1f} s. Goal: p50 < 25 ms at 1 client, no errors.",
        "",
        "| clients | requests | p50 latency (ms) | p99 latency (ms) | queries/s | errors |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for clients, n, p50, p99, qps, errors in rows:
        lines.append(f"| {clients} | {n} | {p50:.1f} | {p99:.1f} | {qps:.0f} | {errors} |")
    lines += ["", f"- Load average (1/5/15 min): {load_before} at the start, {benchutil.load_average()} at the end; "
              "server and clients share the cores."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="indexed vectors (default 100,000)")
    ap.add_argument("--image-size", type=int, default=64, help="model input size (default 64)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels (default 1 4 16)")
    ap.add_argument("--requests", type=int, default=50, help="requests per client (default 50)")
    ap.add_argument("--write", action="store_true", help="rewrite the section of BENCHMARKS.md")
    args = ap.parse_args(argv)
    if min(args.n, args.requests, *args.clients) < 1 or args.image_size < 8:
        ap.error("--n, --requests and --clients must be >= 1, --image-size >= 8")
    return benchutil.publish("serve", run(args), "bench_serve.py", argv, args.write)


if __name__ == "__main__":
    sys.exit(main())
