"""The stack's scaling policy: what KEDA and the HPA are told, in one place for the manifests, the cost report
and the simulator.

KEDA semantics (keda-docs 2.20, reference/scaledobject-spec.md and concepts/scaling-deployments.md; read in
kedacore/keda v2.20.2 pkg/scaling/executor): KEDA alone scales between 0 and 1 replica, when a trigger turns
active (0 -> 1) and when every trigger has been inactive for `cooldownPeriod` (1 -> 0); between 1 and
maxReplicas the HPA it creates scales on the triggers' metrics, each an AverageValue target per replica, taking
the largest replica count any metric asks for, within the behaviour's stabilization windows and policies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stacks.config.schema import AutoscalingSettings
from stacks.sizing import ServingPlan
from stacks.startup import StartupBudget

# How often KEDA asks its triggers (ScaledObject pollingInterval; KEDA's default is 30 s). The HTTP add-on's
# trigger pushes activity every 200 ms instead, so a request at zero replicas starts one at once.
POLLING_SECONDS = 15
# A burst must last this long before the HPA adds a replica: a GPU node bought for a one-minute spike is
# paid for an hour of cold start and idle (HPA behaviour scaleUp.stabilizationWindowSeconds).
SCALE_UP_WINDOW_SECONDS = 60
# Replicas leave one at a time, after the load has stayed low this long (scaleDown.stabilizationWindowSeconds;
# Kubernetes' default is 300 s).
SCALE_DOWN_WINDOW_SECONDS = 600
SCALE_DOWN_PERIOD_SECONDS = 300
# One replica added at a time per period: each needs its own GPU and about a startup budget to serve.
SCALE_UP_PERIOD_SECONDS = 60
# A held request waits for a replica this long relative to the startup budget before it is answered 503.
HOLD_FACTOR = 1.5
# An NLB closes a TLS listener's connection after 350 s without a byte either way, and that limit cannot be
# changed (ELB user guide, "Update the TCP idle timeout for your Network Load Balancer listener"). A held request
# sends nothing, so behind such a listener the hold ends early enough for the 503 to get through.
TLS_LISTENER_IDLE_SECONDS = 350
TLS_HOLD_LIMIT_SECONDS = TLS_LISTENER_IDLE_SECONDS - 20


@dataclass(frozen=True)
class ScalingPolicy:
    min_replicas: int
    max_replicas: int
    # Every trigger inactive this long: the last replica goes (KEDA cooldownPeriod; minReplicas 0 only).
    idle_seconds: int
    polling_seconds: int
    target_waiting_per_replica: float
    kv_cache_target: float
    # In-flight requests per replica at the HTTP add-on's interceptor before it asks for another: vLLM's own
    # batch limit (max_num_seqs), so queueing inside vLLM (the waiting trigger) drives ordinary scale-up and the
    # interceptor's count only wakes the model and backs it up once a replica's batch is full.
    concurrency_per_replica: int
    scale_up_window_seconds: int
    scale_down_window_seconds: int
    # How long a request waits at the interceptor for a replica to start from zero.
    hold_seconds: int
    # A new ScaledObject keeps its replica this long before it may scale to zero (KEDA initialCooldownPeriod;
    # its default 0 would scale a fresh deploy to zero before its first smoke test).
    initial_cooldown_seconds: int

    @property
    def scale_to_zero(self) -> bool:
        return self.min_replicas == 0


def default_hold_seconds(startup: StartupBudget, behind_tls: bool) -> int:
    """The startup budget and a half, within a TLS load balancer's idle limit when clients come through one."""
    hold = math.ceil(startup.total_seconds * HOLD_FACTOR)
    return min(hold, TLS_HOLD_LIMIT_SECONDS) if behind_tls else hold


def scaling_policy(
    settings: AutoscalingSettings, serving: ServingPlan, startup: StartupBudget, behind_tls: bool = False
) -> ScalingPolicy | None:
    """The stack's policy, or None when autoscaling is off (llm:replicas replicas run always). `behind_tls`:
    clients come through a load balancer's TLS listener."""
    if not settings.enabled:
        return None
    hold = settings.hold_seconds or default_hold_seconds(startup, behind_tls)
    return ScalingPolicy(
        min_replicas=settings.min_replicas,
        max_replicas=settings.max_replicas,
        idle_seconds=settings.idle_minutes * 60,
        polling_seconds=POLLING_SECONDS,
        target_waiting_per_replica=settings.target_waiting_per_replica,
        kv_cache_target=settings.kv_cache_target,
        concurrency_per_replica=serving.max_num_seqs,
        scale_up_window_seconds=SCALE_UP_WINDOW_SECONDS,
        scale_down_window_seconds=SCALE_DOWN_WINDOW_SECONDS,
        hold_seconds=hold,
        initial_cooldown_seconds=settings.idle_minutes * 60,
    )
