"""The scaling simulation on small traces, each worked out by hand.

The dev stack's figures used below (Mistral-7B on g6.xlarge, stacks/startup.py and stacks/cost.py):
- startup budget 375 s on a new node: node 40 + 20 s, image 12.64 GB at 58 MB/s = 218 s, weights 14.483 GB at
  312.5 MB/s = 47 s, engine 50 s; on a running node 47 + 50 = 97 s;
- one replica serves 1 full-length request at once (32,768 tokens of its 47,072-token KV cache: 0.696 of it),
  20 s each: 3 a minute;
- $0.36713/h with no GPU node: EKS 0.10 + NAT 0.05 + m6a.large 0.0864 + Karpenter 0.09874 + CoreDNS 0.024685
  + the system node's 50 GiB root volume 0.005479 + KMS 0.00137 + weights in S3 0.000456;
  a GPU node adds 0.8048 + its 50 GiB root volume 0.005479 = $0.81028/h.
"""

from __future__ import annotations

import re

import pytest

from components.karpenter.nodes import NodeSettings, gpu_node_pool
from components.serving.budget import DRAIN_SECONDS
from selfhost.plan.runner import stack_config
from stacks.autoscaling import ScalingPolicy
from stacks.config import PlatformConfig, load_config
from stacks.cost import cost_items, idle_usd_per_hour, peak_usd_per_hour, total_usd_per_hour
from stacks.simulation import (
    GPU_NODE_CONSOLIDATE_AFTER_SECONDS,
    SERVICE_SECONDS,
    SimulationError,
    SimulationInputs,
    simulate,
    simulation_inputs,
)

DEV_IDLE_USD_PER_HOUR = 0.36713
GPU_NODE_USD_PER_HOUR = 0.81028


def stack(name: str = "dev", **overrides: str) -> PlatformConfig:
    """A stack's config with some keys overridden, e.g. stack(**{"autoscaling:idleMinutes": "1"})."""
    return load_config({**stack_config(name)[0], **overrides}, name)


def test_the_dev_stack_is_what_the_hand_calculations_assume():
    inputs = simulation_inputs(stack())
    policy = inputs.policy
    assert policy is not None
    assert (policy.min_replicas, policy.max_replicas, policy.idle_seconds) == (0, 2, 1800)
    # HPA syncs every 15 s; up after 60 s of asks, down after 600 s; 2 waiting or 0.8 of the KV cache per
    # replica; a held request is answered 503 after 1.5 x 375 = 563 s.
    windows = (policy.polling_seconds, policy.scale_up_window_seconds, policy.scale_down_window_seconds)
    assert windows == (15, 60, 600)
    assert (policy.target_waiting_per_replica, policy.kv_cache_target, policy.hold_seconds) == (2, 0.8, 563)
    assert (inputs.new_node_start_seconds, inputs.warm_start_seconds) == (375, 97)
    assert (inputs.capacity_per_replica, inputs.service_seconds, inputs.replicas_per_node) == (1, 20, 1)
    assert inputs.kv_cache_per_request == pytest.approx(32768 / 47072)
    assert inputs.base_usd_per_hour == pytest.approx(DEV_IDLE_USD_PER_HOUR, abs=1e-5)
    assert inputs.gpu_node_usd_per_hour == pytest.approx(GPU_NODE_USD_PER_HOUR, abs=1e-5)


def test_an_idle_day_costs_the_idle_price():
    config = stack()
    result = simulate([0] * 1440, simulation_inputs(config))
    # No request: no replica starts (minReplicas 0), so no GPU node; 24 h at $0.36713/h = $8.8111.
    assert result.hours == 24
    assert result.gpu_node_hours == 0
    assert (result.cold_starts, result.replica_starts, result.requests) == (0, 0, 0)
    assert result.wait_seconds(50) is None and result.wait_seconds_max is None
    assert result.cost_usd == pytest.approx(8.8111, abs=1e-3)
    assert result.cost_usd == pytest.approx(idle_usd_per_hour(config) * 24)


def test_a_request_after_a_long_idle_waits_one_cold_start():
    trace = [0] * 1440
    trace[600] = 1
    result = simulate(trace, simulation_inputs(stack()))
    # The request arrives at 10:00 (second 36,000); KEDA starts a replica at once on a new node, ready 375 s
    # later: it waits 375 s, is served until 36,395, and the replica goes after 30 idle minutes (38,195); its
    # node goes 10 minutes later (38,795). The node ran 375 + 20 + 1,800 + 600 = 2,795 s = 0.77639 h.
    assert result.wait_counts == {375: 1}
    assert (result.wait_seconds(50), result.wait_seconds(95), result.wait_seconds_max) == (375, 375, 375)
    assert (result.cold_starts, result.replica_starts) == (1, 1)
    assert result.gpu_node_seconds == 2795
    assert result.gpu_node_hours == pytest.approx(0.77639, abs=1e-5)
    # 24 h x $0.36713 + 0.77639 h x $0.81028 = 8.81113 + 0.62909 = $9.44022.
    assert result.cost_usd == pytest.approx(9.44022, abs=1e-3)
    # Held 375 s, less than the hold (1.5 x 375 = 563 s): answered.
    assert result.requests_over_hold == 0
    assert result.ready_replicas_by_minute[600:608] == (0, 0, 0, 0, 0, 0, 0, 1)


def test_a_request_finds_the_empty_node_before_it_is_consolidated():
    trace = [0] * 60
    trace[0] = trace[15] = 1
    result = simulate(trace, simulation_inputs(stack(**{"autoscaling:idleMinutes": "1"})))
    # Second 0: a cold start, ready at 375, served until 395; the replica goes 60 idle seconds later (455) and
    # its node would go at 455 + 600 = 1,055. Second 900: the node is still there, so the replica is ready
    # after 97 s (997, wait 97), served until 1,017, gone at 1,077, its node at 1,677.
    assert result.wait_counts == {375: 1, 97: 1}
    assert (result.cold_starts, result.replica_starts) == (1, 2)
    assert result.gpu_node_seconds == 1677
    # Nearest rank: the 1st of 2 waits is the median.
    assert result.wait_seconds(50) == 97
    assert result.hours == 1


def test_sustained_load_reaches_max_replicas_and_its_waits_grow():
    result = simulate([8] * 120, simulation_inputs(stack()))
    # 8 requests a minute, at seconds 0, 7, 15, 22, 30, 37, 45, 52 of each minute. The first starts replica 1
    # (cold, ready at 375). The HPA's waiting trigger then asks for 2 (50 queued / 2 per replica), but only
    # once every ask of the last 60 s says 2 does it add one: at 420, ready at 795 (second 13:15).
    assert result.ready_replicas_by_minute[13] == 1
    assert result.ready_replicas_by_minute[14:120] == (2,) * 106
    assert (result.cold_starts, result.replica_starts) == (2, 2)
    # Minute 0's requests are served one every 20 s from 375: the last (arrived at 52) starts at 515.
    assert result.longest_wait_by_minute[0] == 515 - 52
    # Two replicas start 6 requests a minute and 8 arrive: the 480 requests of an hour later start
    # 480 / 6 = 80 minutes later, so each waits 80 - 60 = 20 minutes = 1,200 s longer.
    longest = [wait or 0 for wait in result.longest_wait_by_minute]
    assert longest[119] - longest[59] == 1200
    assert longest[20] < longest[40] < longest[60] < longest[80] < longest[100] < longest[119]


def test_the_hpa_waits_out_its_window_and_adds_one_replica_per_period():
    policy = ScalingPolicy(
        min_replicas=1,
        max_replicas=3,
        idle_seconds=1800,
        polling_seconds=15,
        target_waiting_per_replica=2,
        kv_cache_target=0.8,
        concurrency_per_replica=256,
        scale_up_window_seconds=60,
        scale_down_window_seconds=600,
        hold_seconds=563,
        initial_cooldown_seconds=1800,
    )
    inputs = SimulationInputs(
        policy=policy,
        replicas=1,
        capacity_per_replica=1,
        kv_cache_per_request=0,
        service_seconds=3600,
        replicas_per_node=1,
        new_node_start_seconds=100,
        warm_start_seconds=10,
        node_linger_seconds=600,
        base_usd_per_hour=0,
        gpu_node_usd_per_hour=1,
        fixed_usd_per_hour=3,
    )
    result = simulate([10], inputs)
    # 10 requests at seconds 0, 6, ..., 54; the running replica takes the first for an hour. The HPA asks:
    # at 15, 2 waiting / (2 x 1) is within its 10% tolerance: 1; at 30, 5 waiting: 3; 45 and 60: 3 (max).
    # The lowest ask of the last 60 s is 3 from 75 on: replica 2 starts at 75 (ready 175); one per 60 s:
    # replica 3 at 135 (ready 235).
    assert result.ready_replicas_by_minute[:5] == (1, 1, 1, 2, 3)
    assert (result.cold_starts, result.replica_starts) == (2, 2)
    # The requests that arrived at 6 and 12 start at 175 and 235.
    assert result.wait_counts[175 - 6] == 1 and result.wait_counts[235 - 12] == 1


def test_a_trace_the_stack_cannot_drain_in_a_day_is_refused():
    inputs = simulation_inputs(stack(**{"autoscaling:maxReplicas": "1"}))
    # One replica serves 3 requests a minute: 10,000 requests take 55 hours, more than a day after the trace.
    with pytest.raises(SimulationError, match="still wait a day after the trace ends"):
        simulate([10_000], inputs)


def test_fixed_replicas_cost_what_the_cost_report_says():
    config = stack()
    trace = [0] * 480 + [4] * 600 + [0] * 360
    result = simulate(trace, simulation_inputs(config))
    # The cost report's peak: 2 GPU nodes, $0.36713 + 2 x $0.81028 = $1.98769/h; the trace ends at its floor.
    assert result.hours == 24
    assert result.fixed_replicas_cost_usd == pytest.approx(1.98769 * 24, abs=1e-3)
    assert result.fixed_replicas_cost_usd == pytest.approx(total_usd_per_hour(cost_items(config)) * 24)
    assert result.cost_usd < result.fixed_replicas_cost_usd


def test_without_autoscaling_the_simulated_cost_is_the_cost_report():
    config = stack(**{"autoscaling:enabled": "false", "llm:replicas": "2"})
    result = simulate([0] * 480 + [4] * 600 + [0] * 360, simulation_inputs(config))
    # 2 replicas run all day on 2 nodes: 48 node-hours, nothing starts, nothing is held at an interceptor.
    assert result.gpu_node_hours == 48
    assert (result.cold_starts, result.replica_starts, result.requests_over_hold) == (0, 0, None)
    assert result.ready_replicas_by_minute == (2,) * 1440
    assert result.cost_usd == pytest.approx(peak_usd_per_hour(config) * 24)
    assert result.cost_usd == pytest.approx(result.fixed_replicas_cost_usd)


def test_a_parked_model_without_autoscaling_cannot_be_simulated():
    with pytest.raises(SimulationError, match="llm:replicas is 0"):
        simulation_inputs(stack(**{"autoscaling:enabled": "false", "llm:replicas": "0"}))


def test_prod_keeps_two_replicas_and_has_no_cold_start_under_light_load():
    config = stack("prod")
    result = simulate([2] * 480, simulation_inputs(config))
    # 2 requests a minute, at 0 and 30 s: each finds a free replica (the other request ended 10 s before), so
    # nobody waits. The HPA asks for at most 1 (no queue; one request's KV cache 0.696 / 0.8 per replica) and
    # minReplicas keeps 2 running on 2 nodes: 16 node-hours in 8 h, the idle price $2.09865/h x 8 = $16.7892.
    assert result.ready_replicas_by_minute == (2,) * 480
    assert (result.cold_starts, result.replica_starts) == (0, 0)
    assert result.wait_counts == {0: 960}
    assert result.gpu_node_hours == 16
    assert result.cost_usd == pytest.approx(16.7892, abs=1e-3)
    assert result.cost_usd == pytest.approx(idle_usd_per_hour(config) * 8)


def test_prod_scales_up_under_a_burst_and_back_down_to_its_minimum():
    result = simulate([12] * 60 + [0] * 60, simulation_inputs(stack("prod")))
    # 12 a minute needs 4 replicas (3 a minute each): the HPA adds two (one a minute), both on new nodes; after
    # the burst it removes them one per 5 minutes once 10 minutes of asks say 2, and never goes below 2.
    assert max(result.ready_replicas_by_minute) == 4
    assert min(result.ready_replicas_by_minute) == 2
    assert result.ready_replicas_by_minute[-1] == 2
    assert result.cold_starts == result.replica_starts == 2


def test_the_node_linger_is_the_gpu_pools_consolidate_after():
    nodes = NodeSettings("dev", "al2023@latest", 50, ("g6.xlarge",), ("spot",), 2)
    consolidate_after = gpu_node_pool(nodes)["spec"]["disruption"]["consolidateAfter"]
    minutes = re.fullmatch(r"(\d+)m", consolidate_after)
    assert minutes and int(minutes.group(1)) * 60 == GPU_NODE_CONSOLIDATE_AFTER_SECONDS


def test_a_replica_scaled_down_finishes_its_requests_within_vllms_drain():
    assert SERVICE_SECONDS < DRAIN_SECONDS
