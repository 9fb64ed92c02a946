"""The fault suite's summary table. ``python -m tests.faults.report [FILE]`` prints it again from
bench/results/faults.json (or faults-fast.json when only the fast cases ran)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLUMNS = [
    ("fault", "fault", 33),
    ("size", "size", 4),
    ("sent", "sent", 6),
    ("accepted", "accepted", 8),
    ("processed", "processed", 9),
    ("replies", "replies", 7),
    ("duplicates", "dups", 4),
    ("lost", "lost", 4),
    ("parked", "parked", 6),
    ("recover_s", "recover s", 9),
    ("drain_s", "drain s", 7),
    ("ok", "ok", 3),
]


def _cell(outcome: dict[str, Any], key: str) -> str:
    if key == "ok":
        return "yes" if not outcome["problems"] else "NO"
    value = outcome.get(key)
    return "-" if value is None else str(value)


def table(outcomes: list[dict[str, Any]], columns: list[tuple[str, str, int]] = COLUMNS) -> str:
    head = " ".join(f"{title:<{w}}" if i == 0 else f"{title:>{w}}" for i, (_, title, w) in enumerate(columns))
    lines = [head, "-" * len(head)]
    for o in outcomes:
        lines.append(
            " ".join(
                f"{_cell(o, k):<{w}}" if i == 0 else f"{_cell(o, k):>{w}}"
                for i, (k, _, w) in enumerate(columns)
            )
        )
        lines += [f"    ! {p}" for p in o["problems"]]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    results = Path(__file__).resolve().parents[2] / "bench" / "results"
    path = (
        Path(argv[0])
        if argv
        else next(
            (p for p in (results / "faults.json", results / "faults-fast.json") if p.exists()),
            results / "faults.json",
        )
    )
    print(table(json.loads(path.read_text())["outcomes"]))


if __name__ == "__main__":
    main(sys.argv[1:])
