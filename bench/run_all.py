"""Every benchmark in one go (``make bench``): the end-to-end benchmark with its baselines at rising rates
(bench/e2e.py), the 10-minute run that shows worker memory over time, the gateway alone (bench/gateway.py),
then retrieval (bench/retrieval.py) and HypeCards (bench/hypecards.py). Each prints its tables; results land in bench/results/. The whole run
took 19 minutes on this project's 2-core machine (docs/benchmarks.md).

    python bench/run_all.py [--quick]    # --quick: short runs to check that everything works
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# Rates in webhooks/s (about 70% of them messages): below, at and far above what a 2-core machine sustains,
# up to the targets (500 and 1,000 messages/s).
FULL = [
    ("e2e.py", ["--steps", "100,200,500,1000", "--duration", "30", "--profile"]),
    ("e2e.py", ["--rate", "100", "--duration", "600", "--no-baselines"]),  # worker memory over 10 minutes
    ("gateway.py", []),
    ("retrieval.py", []),
    ("hypecards.py", []),
]
QUICK = [
    ("e2e.py", ["--rate", "100", "--duration", "10", "--baseline-seconds", "3"]),
    ("gateway.py", ["--requests", "500", "--levels", "1,32"]),
    ("retrieval.py", []),
    ("hypecards.py", ["--renders", "30", "--cards", "30"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs: check that every benchmark works")
    plan = QUICK if parser.parse_args().quick else FULL
    failed = []
    for script, args in plan:
        path = BENCH / script
        if not path.exists():
            print(f"== {script}: not present, skipped", flush=True)
            continue
        print(f"== {script} {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, str(path), *args], cwd=BENCH.parent).returncode != 0:
            failed.append(script)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
