"""A request trace replayed through the stack's scaling policy: GPU node-hours, cost, cold starts and waits.

The model runs one second at a time. The requests of trace minute m arrive spread evenly over it (request i of n
at second 60·m + ⌊60·i/n⌋). They wait in one first-come-first-served queue (held by the HTTP add-on's
interceptor while no replica is ready, queued inside vLLM otherwise) until a ready replica has room: a replica
serves `capacity_per_replica` requests at once for `service_seconds` each. A request's wait runs from its
arrival to the start of its service. The rules, each following its source:

- 0 -> 1 (KEDA, keda-docs 2.20 concepts/scaling-deployments.md, "activation phase"): the HTTP add-on's
  external-push trigger reports activity as it happens (stacks/autoscaling.py), so the second a request waits
  with no replica running or starting, one starts.
- 1 -> N (the HPA that KEDA creates, every `polling_seconds`; Kubernetes docs "Horizontal Pod Autoscaling",
  algorithm details): each trigger is an AverageValue target, so it asks for ⌈total / target per replica⌉
  replicas, or for the current count when total / (target x current) is within the HPA's 10% tolerance; the
  HPA takes the largest ask, within [max(minReplicas, 1), maxReplicas]. The triggers are those of the stack's
  ScaledObject (components/autoscaling/manifests.py): requests waiting in vLLM (the queue, counted only while
  a replica is ready: vLLM's series vanish with its pods and KEDA's Prometheus scaler reads the empty result
  as 0) per target_waiting_per_replica; KV-cache usage per kv_cache_target, each request in service filling
  `kv_cache_per_request` of its replica's cache; and, with scale to zero only, the requests at the HTTP
  add-on's interceptor (waiting or in service) per concurrency_per_replica.
- Stabilization and policies (same page, "Stabilization window" and "Scaling policies"; the pseudocode of
  kubernetes/enhancements KEP 853, configurable HPA scale velocity):
  the HPA moves up to the lowest ask of the last scale_up_window_seconds and down to the highest ask of the
  last scale_down_window_seconds, one replica per SCALE_UP_PERIOD_SECONDS up and one per
  SCALE_DOWN_PERIOD_SECONDS down.
- A replica scaled down is picked as the ReplicaSet controller picks (kubernetes
  pkg/controller/controller_utils.go, ActivePodsWithRanks): one still starting first, else the one ready for
  the shortest time. A starting replica goes at
  once; a ready one takes no new request and goes when its requests finish: vLLM drains them for up to 150 s
  (components/serving/budget.py DRAIN_SECONDS), longer than a request's service time.
- N -> 0 (KEDA, keda-docs 2.20 reference/scaledobject-spec.md, cooldownPeriod): with minReplicas 0, once no
  request has waited or been in service for idle_seconds, every replica goes. KEDA checks on its polling
  interval, so in reality this happens up to that long later; initialCooldownPeriod only delays the first
  scale to zero after the ScaledObject is created, long before the trace.
- Nodes (Karpenter v1.14 concepts/disruption.md, consolidationPolicy WhenEmpty): a starting replica takes a
  free slot on a node that runs (replicas_per_node per node), an empty node that is still there included, and
  is ready after the container's start (StartupBudget.container_seconds), or when the node's own first replica
  would be, whichever is later; with no slot it launches a node and is ready after the whole startup budget:
  a cold start. An empty node goes `node_linger_seconds` after its last replica, and is billed from its
  launch until then.

The trace starts with the stack at its floor (minReplicas ready replicas, or none), and the run goes on after
the trace's last minute until the stack is back at its floor (every request served, replicas at the floor, no
empty node left), so the costs include the wind-down the trace caused. The whole run is billed at the stack's
cost per hour without GPU nodes, plus each GPU node's price (instance and root volume) for its time.

A request held at the interceptor (no replica ready) longer than the policy's hold_seconds is answered 503 by
the route's fallback: `requests_over_hold` counts those, and the model keeps them in the queue all the same.

Left out: requests' lengths (every request is a full-length sequence served in `service_seconds`), the
interceptor's response-header timeout on very long waits in vLLM's queue, and spot interruptions.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stacks.autoscaling import SCALE_DOWN_PERIOD_SECONDS, SCALE_UP_PERIOD_SECONDS, ScalingPolicy
from stacks.config import PlatformConfig
from stacks.cost import cost_items, peak_usd_per_hour, total_usd_per_hour

# How long a replica works on one request. Decoding one sequence is bound by memory bandwidth: every token reads
# all the weights once, so an L4 (300 GB/s, NVIDIA L4 datasheet) over Mistral-7B's 14.5 GB of weights makes at
# most about 20 tokens a second, and a chat answer of about 400 tokens takes about 20 s. The same figure serves
# every instance type: it is a stated assumption, not a measurement (`selfhost bench` measures one).
SERVICE_SECONDS = 20
# The GPU NodePool's consolidateAfter (components/karpenter/nodes.py, gpu_node_pool: "10m"): an empty GPU node
# stays, and is billed, this long after its last replica goes.
GPU_NODE_CONSOLIDATE_AFTER_SECONDS = 600
# The HPA leaves the replica count alone while a metric is within 10% of its target (Kubernetes docs,
# "Horizontal Pod Autoscaling", algorithm details; --horizontal-pod-autoscaler-tolerance).
HPA_TOLERANCE = 0.1
# After the trace, the run waits at most this long for the queue to empty before it gives up.
WIND_DOWN_LIMIT_SECONDS = 24 * 3600


class SimulationError(ValueError):
    """Inputs the model cannot replay: one sentence on why and what to do."""


@dataclass(frozen=True)
class SimulationInputs:
    """What the simulation reads from a stack: its policy, a replica's capacity and start-up times, prices."""

    # None: autoscaling is off and `replicas` replicas run all the time.
    policy: ScalingPolicy | None
    # llm:replicas: the replicas that run when `policy` is None.
    replicas: int
    # Requests one replica serves at once (full-length sequences, ServingPlan.concurrent_sequences), and the
    # share of its KV cache each fills (max_model_len / kv_cache_tokens).
    capacity_per_replica: int
    kv_cache_per_request: float
    service_seconds: int
    replicas_per_node: int
    # From a replica's start to its first request, on a new node (the startup budget) and on a running one.
    new_node_start_seconds: int
    warm_start_seconds: int
    node_linger_seconds: int
    # The stack's cost per hour with no GPU node; one GPU node's own cost per hour; the cost report's figure.
    base_usd_per_hour: float
    gpu_node_usd_per_hour: float
    fixed_usd_per_hour: float

    def __post_init__(self) -> None:
        if self.policy is None and self.replicas < 1:
            raise SimulationError(
                "autoscaling is off and llm:replicas is 0, so no replica would serve the trace: set llm:replicas "
                "or autoscaling:enabled"
            )

    @property
    def floor(self) -> int:
        """The replicas that run with no load: minReplicas, or llm:replicas with autoscaling off."""
        return self.policy.min_replicas if self.policy is not None else self.replicas


def simulation_inputs(config: PlatformConfig) -> SimulationInputs:
    """The stack's inputs; prices as the cost report counts them (stacks/cost.py)."""
    base = total_usd_per_hour(cost_items(config, gpu_nodes=0))
    return SimulationInputs(
        policy=config.scaling,
        replicas=config.serving.replicas,
        capacity_per_replica=max(config.serving.concurrent_sequences, 1),
        kv_cache_per_request=config.serving.max_model_len / config.serving.kv_cache_tokens,
        service_seconds=SERVICE_SECONDS,
        replicas_per_node=config.serving.replicas_per_node,
        new_node_start_seconds=config.startup.total_seconds,
        warm_start_seconds=config.startup.container_seconds,
        node_linger_seconds=GPU_NODE_CONSOLIDATE_AFTER_SECONDS,
        base_usd_per_hour=base,
        # The GPU node's instance and its root volume: what one more node adds to the cost report.
        gpu_node_usd_per_hour=total_usd_per_hour(cost_items(config, gpu_nodes=1)) - base,
        fixed_usd_per_hour=peak_usd_per_hour(config),
    )


@dataclass(frozen=True)
class SimulationResult:
    # The trace's minutes and the wind-down after them.
    seconds: int
    requests: int
    gpu_node_seconds: int
    cold_starts: int
    replica_starts: int
    # Seconds waited -> requests that waited that long.
    wait_counts: Mapping[int, int]
    # For each trace minute, the longest wait of a request that arrived in it (None: no request).
    longest_wait_by_minute: tuple[int | None, ...]
    # Replicas ready to serve at the start of each simulated minute.
    ready_replicas_by_minute: tuple[int, ...]
    # Requests held with no replica ready for longer than hold_seconds, answered 503 in reality (None:
    # autoscaling off, there is no interceptor).
    requests_over_hold: int | None
    cost_usd: float
    # The same time with the stack's most replicas running throughout: the cost report's figure per hour.
    fixed_replicas_cost_usd: float

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    @property
    def gpu_node_hours(self) -> float:
        return self.gpu_node_seconds / 3600

    def wait_seconds(self, percent: float) -> int | None:
        """The nearest-rank percentile of the waits: the shortest wait that `percent`% of requests did not
        exceed (None: no request)."""
        if not self.requests:
            return None
        rank = max(math.ceil(percent / 100 * self.requests), 1)
        seen = 0
        for wait in sorted(self.wait_counts):
            seen += self.wait_counts[wait]
            if seen >= rank:
                return wait
        raise AssertionError("the wait counts add up to the requests")

    @property
    def wait_seconds_max(self) -> int | None:
        return max(self.wait_counts, default=None)


def simulate(trace: Sequence[int], inputs: SimulationInputs) -> SimulationResult:
    """Replay `trace` (requests arriving in each minute, from minute 0) through the stack in `inputs`."""
    return _Run(trace, inputs).result()


@dataclass
class _Node:
    launched_at: int
    replicas: int = 0
    # When its last replica went (meaningful while `replicas` is 0).
    empty_since: int = 0


@dataclass
class _Replica:
    node: _Node
    ready_at: int
    # Requests in service as [second they finish, how many], oldest first.
    serving: deque[list[int]] = field(default_factory=deque)
    busy: int = 0
    # Scaled down: takes no new request and goes once `busy` is 0.
    draining: bool = False


class _Run:
    def __init__(self, trace: Sequence[int], inputs: SimulationInputs):
        self.trace = trace
        self.inputs = inputs
        self.end = len(trace) * 60
        # Requests not in service yet as [arrival second, how many], first come first.
        self.queue: deque[list[int]] = deque()
        self.queued = 0
        # Requests that arrived while no replica was ready, as [arrival second, how many], and those of them
        # that waited longer than the interceptor holds one.
        self.held: deque[list[int]] = deque()
        self.over_hold = 0
        self.nodes: list[_Node] = []
        self.replicas: list[_Replica] = []
        self.idle_since: int | None = None
        # The HPA's asks as (second, replicas), and the seconds it added or removed a replica.
        self.recommendations: deque[tuple[int, int]] = deque()
        self.scale_ups: deque[int] = deque()
        self.scale_downs: deque[int] = deque()
        self.wait_counts: Counter[int] = Counter()
        self.longest_wait_by_minute: list[int | None] = [None] * len(trace)
        self.ready_replicas_by_minute: list[int] = []
        self.gpu_node_seconds = 0
        self.cold_starts = 0
        self.replica_starts = 0
        # The floor runs before the trace starts, on nodes billed from second 0.
        for _ in range(inputs.floor):
            self._place(self._node_with_room() or self._launch_node(0), ready_at=0)
        if inputs.policy is not None and inputs.floor:
            # The HPA has asked for the floor at every sync so far; its last ask is one period old.
            self.recommendations.append((-inputs.policy.polling_seconds, inputs.floor))

    def result(self) -> SimulationResult:
        second = 0
        while True:
            self._step(second)
            if second >= self.end and self._at_floor(second):
                break
            if second >= self.end + WIND_DOWN_LIMIT_SECONDS:
                raise SimulationError(
                    f"{self.queued:,} requests still wait a day after the trace ends: the trace needs more than "
                    f"the stack's replicas serve; shorten it or raise the stack's replicas"
                )
            self.gpu_node_seconds += len(self.nodes)
            if second % 60 == 0:
                self.ready_replicas_by_minute.append(sum(self._ready(r, second) for r in self.replicas))
            second += 1
        inputs, hours = self.inputs, second / 3600
        return SimulationResult(
            seconds=second,
            requests=sum(self.wait_counts.values()),
            gpu_node_seconds=self.gpu_node_seconds,
            cold_starts=self.cold_starts,
            replica_starts=self.replica_starts,
            wait_counts=dict(self.wait_counts),
            longest_wait_by_minute=tuple(self.longest_wait_by_minute),
            ready_replicas_by_minute=tuple(self.ready_replicas_by_minute),
            requests_over_hold=self.over_hold if inputs.policy is not None else None,
            cost_usd=inputs.base_usd_per_hour * hours
            + self.gpu_node_seconds / 3600 * inputs.gpu_node_usd_per_hour,
            fixed_replicas_cost_usd=inputs.fixed_usd_per_hour * hours,
        )

    def _step(self, second: int) -> None:
        self._arrive(second)
        self._finish(second)
        self.nodes = [
            node
            for node in self.nodes
            if node.replicas or second - node.empty_since < self.inputs.node_linger_seconds
        ]
        self._dispatch(second)
        # The autoscalers see the second's end: a request a replica took at once never counts as waiting.
        policy = self.inputs.policy
        if policy is not None:
            self._hold(second, policy)
            self._keda(second, policy)
            if second % policy.polling_seconds == 0 and self._scaled():
                self._hpa(second, policy)

    def _arrive(self, second: int) -> None:
        if second >= self.end:
            return
        minute, offset = divmod(second, 60)
        n = self.trace[minute]
        # Request i of n arrives at ⌊60·i/n⌋: those with offset ≤ 60·i/n < offset + 1.
        count = math.ceil((offset + 1) * n / 60) - math.ceil(offset * n / 60)
        if count:
            self.queue.append([second, count])
            self.queued += count
            self.held.append([second, count])

    def _finish(self, second: int) -> None:
        for replica in list(self.replicas):
            while replica.serving and replica.serving[0][0] <= second:
                replica.busy -= replica.serving.popleft()[1]
            if replica.draining and not replica.busy:
                self._remove(replica, second)

    def _keda(self, second: int, policy: ScalingPolicy) -> None:
        active = self.queued > 0 or any(replica.busy for replica in self.replicas)
        if active:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = second
        if active and not self._scaled():
            # Only reached with minReplicas 0 (the HPA keeps at least one otherwise): KEDA starts one replica.
            self._start(second)
        elif (
            policy.scale_to_zero
            and self.replicas
            and self.idle_since is not None
            and second - self.idle_since >= policy.idle_seconds
        ):
            # Idle: no replica serves anything, so each goes at once.
            for replica in list(self.replicas):
                self._remove(replica, second)

    def _hpa(self, second: int, policy: ScalingPolicy) -> None:
        current = self._scaled()
        waiting = self.queued if any(self._ready(r, second) for r in current) else 0
        in_service = sum(replica.busy for replica in self.replicas)
        asks = [
            _ask(waiting, policy.target_waiting_per_replica, len(current)),
            _ask(in_service * self.inputs.kv_cache_per_request, policy.kv_cache_target, len(current)),
        ]
        if policy.scale_to_zero:
            asks.append(_ask(self.queued + in_service, policy.concurrency_per_replica, len(current)))
        ask = min(max(*asks, policy.min_replicas, 1), policy.max_replicas)
        self.recommendations.append((second, ask))
        longest_window = max(policy.scale_up_window_seconds, policy.scale_down_window_seconds)
        while self.recommendations[0][0] <= second - longest_window:
            self.recommendations.popleft()
        up = min(r for at, r in self.recommendations if at > second - policy.scale_up_window_seconds)
        down = max(r for at, r in self.recommendations if at > second - policy.scale_down_window_seconds)
        target = min(max(len(current), up), down)
        # One replica per period each way (stacks/autoscaling.py): the HPA counts its own changes in the period.
        while self.scale_ups and self.scale_ups[0] <= second - SCALE_UP_PERIOD_SECONDS:
            self.scale_ups.popleft()
        while self.scale_downs and self.scale_downs[0] <= second - SCALE_DOWN_PERIOD_SECONDS:
            self.scale_downs.popleft()
        if target > len(current) and not self.scale_ups:
            self._start(second)
            self.scale_ups.append(second)
        elif target < len(current) and not self.scale_downs:
            # The ReplicaSet's pick: a starting replica first, else the one ready for the shortest time.
            self._stop(max(current, key=lambda r: (not self._ready(r, second), r.ready_at)), second)
            self.scale_downs.append(second)

    def _hold(self, second: int, policy: ScalingPolicy) -> None:
        """Held requests go to vLLM once a replica is ready; the interceptor answers those held too long 503
        (the InterceptorRoute's readiness timeout)."""
        if any(self._ready(replica, second) for replica in self.replicas):
            self.over_hold += sum(n for arrived, n in self.held if second - arrived > policy.hold_seconds)
            self.held.clear()

    def _dispatch(self, second: int) -> None:
        capacity, service = self.inputs.capacity_per_replica, self.inputs.service_seconds
        for replica in self.replicas:
            if replica.draining or not self._ready(replica, second):
                continue
            while self.queue and replica.busy < capacity:
                group = self.queue[0]
                arrived, taken = group[0], min(group[1], capacity - replica.busy)
                wait, minute = second - arrived, arrived // 60
                self.wait_counts[wait] += taken
                self.longest_wait_by_minute[minute] = max(self.longest_wait_by_minute[minute] or 0, wait)
                group[1] -= taken
                if not group[1]:
                    self.queue.popleft()
                self.queued -= taken
                replica.busy += taken
                replica.serving.append([second + service, taken])

    def _start(self, second: int) -> None:
        node = self._node_with_room()
        if node is None:
            node = self._launch_node(second)
            self.cold_starts += 1
        self.replica_starts += 1
        self._place(
            node,
            ready_at=max(
                second + self.inputs.warm_start_seconds, node.launched_at + self.inputs.new_node_start_seconds
            ),
        )

    def _stop(self, replica: _Replica, second: int) -> None:
        if replica.busy:
            replica.draining = True
        else:
            self._remove(replica, second)

    def _place(self, node: _Node, ready_at: int) -> None:
        node.replicas += 1
        self.replicas.append(_Replica(node, ready_at))

    def _remove(self, replica: _Replica, second: int) -> None:
        self.replicas.remove(replica)
        replica.node.replicas -= 1
        if not replica.node.replicas:
            replica.node.empty_since = second

    def _node_with_room(self) -> _Node | None:
        return next((n for n in self.nodes if n.replicas < self.inputs.replicas_per_node), None)

    def _launch_node(self, second: int) -> _Node:
        node = _Node(launched_at=second)
        self.nodes.append(node)
        return node

    def _scaled(self) -> list[_Replica]:
        """The replicas the Deployment asks for: ready or starting, not draining."""
        return [replica for replica in self.replicas if not replica.draining]

    @staticmethod
    def _ready(replica: _Replica, second: int) -> bool:
        return not replica.draining and replica.ready_at <= second

    def _at_floor(self, second: int) -> bool:
        """Back where the trace started: nothing waiting, the floor's replicas ready and idle, no empty node."""
        return (
            not self.queued
            and len(self.replicas) == self.inputs.floor
            and all(self._ready(r, second) and not r.busy for r in self.replicas)
            and all(node.replicas for node in self.nodes)
        )


def _ask(total: float, target_per_replica: float, current: int) -> int:
    """What one AverageValue metric asks the HPA for (kubernetes pkg/controller/podautoscaler/
    replica_calculator.go, GetExternalPerPodMetricReplicas)."""
    if abs(total / (target_per_replica * current) - 1) <= HPA_TOLERANCE:
        return current
    return math.ceil(total / target_per_replica)
