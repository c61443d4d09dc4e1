"""A training process for the real-process tests: logs 3 metrics a step and reports progress on stdout.

python -m tests.tracking.trainer_process EXPERIMENT --steps N --step-seconds S [--send-interval S]
                                         [--heartbeat-interval S] [--report-at N]
It prints "run <run_id>" when the run starts and "logged <n>" after step n-1 when n == --report-at,
then keeps training (for the test to signal it) until --steps are done.
"""

from __future__ import annotations

import argparse
import time

from mlops_platform.tracking import Tracker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("experiment")
    parser.add_argument("--steps", type=int, default=10**9)
    parser.add_argument("--step-seconds", type=float, default=0.0)
    parser.add_argument("--send-interval", type=float, default=1.0)
    parser.add_argument("--heartbeat-interval", type=float, default=30.0)
    parser.add_argument("--report-at", type=int, default=0)
    args = parser.parse_args()
    tracker = Tracker(
        send_interval=args.send_interval,
        heartbeat_interval=args.heartbeat_interval,
        system_metrics_interval=0,
    )
    with tracker.run(experiment=args.experiment, run_name="trainer-process") as run:
        assert run.flush(timeout=60)  # the start-up records are on the server; the rest waits for the sender
        print(f"run {run.run_id}", flush=True)
        run.log_params({"steps": args.steps, "optimizer": {"lr": 0.01}})
        for step in range(args.steps):
            run.log_metrics({"loss": 1.0 / (step + 1), "accuracy": step / 1e6, "lr": 0.01}, step=step)
            if step + 1 == args.report_at:
                run.log_text(f"reached step {step}", "notes/progress.txt")
                print(f"logged {step + 1}", flush=True)
            if args.step_seconds:
                time.sleep(args.step_seconds)


if __name__ == "__main__":
    main()
