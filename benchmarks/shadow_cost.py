"""The shadow's cost to the champion, counted in CPU instructions: the same requests answered by a
champion-only server and by a shadow server, each under valgrind's callgrind.

    .venv/bin/python benchmarks/shadow_cost.py [--kinds torch,sklearn] [--requests 300]

Why instructions: `serving.py --shadow` times the shadow's cost under load, where one server's cells
differ by 10-20 % from minute to minute on a shared 2-vCPU machine and the p99 moves with single
stalls; a 10 % target sits inside that noise. Callgrind counts the instructions a process executes,
the same count for the same inputs whatever else the machine does, so a change of 1 % in the
champion's work per request shows as 1 %, every run. What it does not see: the kernel's side
(system calls, wakeups), cache misses and the worker process (not traced), which the timed benchmark
covers.

For each kind (`torch`: a torch MLP, pytorch flavor; `sklearn`: a scaler + logistic regression;
both as `serving.py` registers them, a second version as `@challenger`), each server is started
under `valgrind --tool=callgrind --instr-atstart=no` in a temporary SQLite store, warmed up with
`--warmup` 1-row requests, then counted over `--requests` more, one at a time on one keep-alive
connection (callgrind_control switches counting on and off around them). The shadow server runs with
`--shadow-max-busy 1` so that every copy is accepted and scored: the whole of the shadow's work.
Callgrind slows the server about fiftyfold, so the shadow's time-based settings are stretched as
much in its process (copies wait up to SEND_EVERY_S x 50 before they go, the gate is read every
GATE_EVERY_S x 50): bursts then hold the 16 copies they hold at a few hundred requests a second and
more, as in the timed benchmark, not one copy each. Printed: instructions per request of each
server, their ratio, and the copies the shadow scored.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mlops_platform.server import free_port

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 600
# How much slower a process runs under callgrind (measured here: ~24 ms a 1-row torch request against
# ~0.4 ms): the factor by which the shadow's time-based settings are stretched.
DILATION = 50
# The server, started with the shadow's timing stretched (module constants, read at each use).
LAUNCHER = (
    "import sys; import mlops_platform.serving.shadow as shadow; "
    f"shadow.SEND_EVERY_S *= {DILATION}; shadow.GATE_EVERY_S *= {DILATION}; "
    "sys.argv = ['mlops', *sys.argv[1:]]; from mlops_platform.cli import main; main()"
)


def count(label: str, model_uri: str, tracking_uri: str, body: bytes, args, options: tuple[str, ...]) -> dict:
    """Instructions per request of one server (callgrind), and its /health after the counted requests."""
    out = Path(args.home) / f"callgrind-{label}.out"
    port = free_port()
    command = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
        sys.executable, "-c", LAUNCHER, "serve", "--model-uri", model_uri, "--port", str(port), *options,
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    log = open(Path(args.home) / f"{label}.log", "wb")  # noqa: SIM115 - the child holds it for its life
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        connection = wait_until_up(port, process, Path(log.name))
        post(connection, body, args.warmup)
        time.sleep(1)  # the warm-up's last copies answered before counting starts
        subprocess.run(["callgrind_control", "-i", "on", str(process.pid)], check=True, capture_output=True)
        post(connection, body, args.requests)
        subprocess.run(["callgrind_control", "-i", "off", str(process.pid)], check=True, capture_output=True)
        connection.request("GET", "/health")
        health = json.loads(connection.getresponse().read())
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(120)
    return {"instructions": total_instructions(out) / args.requests, "health": health}


def wait_until_up(port: int, process: subprocess.Popen, log: Path) -> http.client.HTTPConnection:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            connection = http.client.HTTPConnection(LOOPBACK, port, timeout=600)
            connection.request("GET", "/ping")
            connection.getresponse().read()
            return connection
        except OSError:
            time.sleep(1)
    raise SystemExit(f"server did not start:\n{log.read_text()[-3000:]}")


def post(connection: http.client.HTTPConnection, body: bytes, requests: int) -> None:
    for _ in range(requests):
        connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
        assert response.status == 200, answer[:300]


def total_instructions(callgrind_out: Path) -> int:
    """The counted instructions, from callgrind's output file: its `totals:` line, at the end (the
    `summary:` line of its header holds 0 when counting starts switched off)."""
    totals = [line for line in callgrind_out.read_text().splitlines() if line.startswith("totals:")]
    if not totals:
        raise SystemExit(f"no totals in {callgrind_out}")
    return int(totals[-1].split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kinds", default="torch,sklearn")
    parser.add_argument("--requests", type=int, default=300, help="counted requests per server")
    parser.add_argument("--warmup", type=int, default=300, help="requests before counting starts")
    args = parser.parse_args()
    import serving as bench

    args.home = tempfile.mkdtemp(prefix="shadow-cost-")
    tracking_uri = f"sqlite:///{args.home}/mlflow.db"
    os.chdir(args.home)  # the store's artifacts land here
    x, _ = bench._digits()
    body = bench._split_body(x.iloc[:1])
    rows = []
    for kind in args.kinds.split(","):
        name = f"cost-{kind}"
        register = bench.register_torch if kind == "torch" else bench.register_sklearn
        register(tracking_uri, name)
        register(tracking_uri, name, "challenger", **({"seed": 1} if kind == "torch" else {"c": 0.5}))
        champion = f"models:/{name}@champion"
        shadow_options = (
            "--challenger", f"models:/{name}@challenger", "--mode", "shadow", "--shadow-max-busy", "1",
        )  # fmt: skip
        alone = count(f"{kind}-alone", champion, tracking_uri, body, args, ())
        shadow = count(f"{kind}-shadow", champion, tracking_uri, body, args, shadow_options)
        counts = shadow["health"]["shadow"]
        rows.append((kind, alone["instructions"], shadow["instructions"], counts["scored"], counts["shed"]))
        print(
            f"  {kind}: {alone['instructions']:,.0f} / {shadow['instructions']:,.0f} instructions", flush=True
        )
    print(
        f"\nInstructions per 1-row request of the serving process (callgrind, {args.requests} requests "
        f"after {args.warmup}; every copy accepted):"
    )
    print("| model | champion only | with a shadow | ratio | copies scored / shed |")
    print("|---|---|---|---|---|")
    for kind, alone, shadow, scored, shed in rows:
        print(f"| {kind} | {alone:,.0f} | {shadow:,.0f} | {shadow / alone:.3f}x | {scored} / {shed} |")


if __name__ == "__main__":
    main()
