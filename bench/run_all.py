"""Every benchmark in one go (``make bench``): the end-to-end benchmark with its baselines (bench/e2e.py), then
the gateway alone (bench/gateway.py), then retrieval (bench/retrieval.py) where it exists. Each prints its
tables; results land in bench/results/.

    python bench/run_all.py [--quick]    # --quick: short runs to check that everything works
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent

FULL = {
    "e2e.py": ["--steps", "250,500,1000", "--duration", "60", "--profile"],
    "gateway.py": [],
    "retrieval.py": [],
}
QUICK = {
    "e2e.py": ["--rate", "100", "--duration", "10", "--baseline-seconds", "3"],
    "gateway.py": ["--requests", "500", "--levels", "1,32"],
    "retrieval.py": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs: check that every benchmark works")
    plan = QUICK if parser.parse_args().quick else FULL
    failed = []
    for script, args in plan.items():
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
