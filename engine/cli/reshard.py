"""`chatnation reshard --inbound N [--json]`: change the number of inbound shards while intake goes on and
each contact's messages stay in order (engine/reshard.py); prints each step's time."""

from __future__ import annotations

import json

import typer

from engine.cli.common import console, run, settings
from engine.cli.errors import Refused
from engine.reshard import ReshardRefused
from engine.reshard import reshard as reshard_inbound


def reshard(
    inbound: int = typer.Option(..., "--inbound", min=1, max=256, help="The new number of inbound shards"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Move the inbound queues to N shards without stopping the gateways: new messages go to the new queues
    at once and wait there until the workers have finished the old ones."""
    s = settings()
    try:
        report = run(lambda: reshard_inbound(s, inbound))
    except ReshardRefused as err:
        raise Refused(str(err)) from err
    if report is None:
        result = {"unchanged": True, "shards": inbound}
        message = f"the inbound queues already have {inbound} shards"
    else:
        result = report.as_dict()
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in report.steps.items())
        message = (
            f"inbound shards {report.old[1]} -> {report.new[1]} (generation {report.new[0]}): {steps}; "
            f"{len(report.deleted)} old queue(s) deleted"
        )
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        console.print(message, highlight=False)
