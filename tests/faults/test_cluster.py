"""The short cluster variant (issue 22) in ``make faults``: two private RabbitMQ nodes, workers on three hosts
(network namespaces: root only), one broker node stopped under load and started again; the load through the test
process's gateway (no haproxy needed). ``make scale-test`` has the full set on three nodes."""

from __future__ import annotations

import pytest

from tests.faults.conftest import OUTCOMES
from tests.faults.scale import SHORT, run, unavailable
from tests.faults.services import rabbit_scripts


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_two_nodes_one_stopped_under_load() -> None:
    if rabbit_scripts() is None:
        pytest.skip("rabbitmq-server is not installed: the cluster needs private RabbitMQ nodes")
    if reason := unavailable(gateways=False):
        pytest.skip(f"the cluster's hosts are network namespaces: {reason}")
    (outcome,) = await run(2, SHORT, ["broker node stopped, restarted"], gateways=False)
    OUTCOMES.append({**outcome, "fault": f"cluster of 2: {outcome['fault']}"})
    assert outcome["problems"] == []
    assert outcome["lost"] == 0 and outcome["order_broken"] == 0
    assert outcome["duplicates"] <= outcome["allowed_duplicates"]
    assert outcome["notes"]["connect_past_dead_node_s"] < 10
