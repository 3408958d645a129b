"""ModelServer: one model served by vLLM behind an OpenAI-compatible API, in its own namespace.

It creates the namespace, the credentials Secret (the API key, generated unless configured, and the Hugging
Face token), the Deployment sized by the serving plan, the Service, a PodDisruptionBudget when there is more
than one replica, the ServiceMonitor and PrometheusRule (which need the Prometheus Operator's CRDs, hence
`monitoring_depends_on`) and the Grafana dashboard. The manifests come from the pure builders in
serving_manifests, serving_alerts and serving_dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.monitoring.dashboards import dashboard_configmap
from components.serving.alerts import prometheus_rule
from components.serving.budget import replica_ready_seconds, rollout_seconds
from components.serving.dashboard import VLLM_DASHBOARD_TITLE, vllm_dashboard
from components.serving.manifests import (
    APP_NAME,
    ServingSettings,
    credentials_secret,
    deployment_manifest,
    endpoint,
    missing_token_error,
    namespace_manifest,
    network_policy,
    pod_disruption_budget,
    service_manifest,
    service_monitor,
)

# Long enough to be hard to guess, and letters and digits only so it fits an HTTP header and a shell unquoted.
API_KEY_LENGTH = 48


class ModelAccessError(pulumi.RunError):
    """The model cannot be downloaded as configured; raised by `pulumi up` before anything is created.

    A RunError, so Pulumi prints the message without a Python stack trace.
    """


def require_model_access(settings: ServingSettings) -> None:
    """Stop `pulumi up` when a gated model has no Hugging Face token (a preview only warns)."""
    problem = missing_token_error(settings)
    if problem is not None:
        raise ModelAccessError(problem)


@dataclass
class ModelServerArgs:
    settings: ServingSettings
    provider: k8s.Provider
    # The API key clients must send (a Pulumi secret); None: one is generated.
    api_key: pulumi.Output[str] | None = None
    # The Hugging Face token for gated models (a Pulumi secret).
    hf_token: pulumi.Output[str] | None = None
    # What must exist before pods can be scheduled (Karpenter, its NodePools, the GPU device plugin).
    depends_on: Sequence[pulumi.Resource] = ()
    # The kube-prometheus-stack release, whose CRDs the ServiceMonitor and PrometheusRule need.
    monitoring_depends_on: Sequence[pulumi.Resource] = ()


class ModelServer(pulumi.ComponentResource):
    namespace: str
    served_model_name: str
    endpoint_service: str
    endpoint_port: int
    in_cluster_url: str
    port_forward_command: str
    curl_command: str
    api_key: pulumi.Output[str]
    dashboards: list[str]
    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service

    def __init__(self, name: str, args: ModelServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("selfhost:index:ModelServer", name, None, opts)
        settings = args.settings
        self._name, self._args, self._settings = name, args, settings

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=namespace_manifest(settings)["metadata"],
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[*args.depends_on]),
        )
        self._in_namespace = pulumi.ResourceOptions(
            parent=self, provider=args.provider, depends_on=[namespace]
        )
        self.api_key = pulumi.Output.secret(self._api_key())
        credentials = self._credentials()
        self.deployment = self._deployment(credentials)
        service = service_manifest(settings)
        self.service = k8s.core.v1.Service(
            f"{name}-service", metadata=service["metadata"], spec=service["spec"], opts=self._in_namespace
        )
        policy = network_policy(settings)
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=policy["metadata"],
            spec=policy["spec"],
            opts=self._in_namespace,
        )
        budget = pod_disruption_budget(settings)
        if budget is not None:
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb", metadata=budget["metadata"], spec=budget["spec"], opts=self._in_namespace
            )
        self._monitoring()

        reach = endpoint(settings)
        self.namespace = settings.namespace
        self.served_model_name = settings.model_id
        self.endpoint_service = reach.service
        self.endpoint_port = reach.port
        self.in_cluster_url = reach.in_cluster_url
        self.port_forward_command = reach.port_forward_command
        self.curl_command = reach.curl_command
        self.dashboards = [VLLM_DASHBOARD_TITLE]
        self.register_outputs(
            {
                "namespace": self.namespace,
                "served_model_name": self.served_model_name,
                "endpoint_service": self.endpoint_service,
                "endpoint_port": self.endpoint_port,
                "in_cluster_url": self.in_cluster_url,
                "port_forward_command": self.port_forward_command,
                "curl_command": self.curl_command,
                "api_key": self.api_key,
                "dashboards": self.dashboards,
            }
        )

    def _api_key(self) -> pulumi.Output[str]:
        if self._args.api_key is not None:
            return self._args.api_key
        generated = random.RandomPassword(
            f"{self._name}-api-key",
            length=API_KEY_LENGTH,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return generated.result

    def _credentials(self) -> k8s.core.v1.Secret:
        secret = credentials_secret(self._settings, self.api_key, self._args.hf_token)
        return k8s.core.v1.Secret(
            f"{self._name}-credentials",
            metadata=secret["metadata"],
            type=secret["type"],
            string_data=secret["stringData"],
            opts=self._in_namespace.merge(
                pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])
            ),
        )

    def _deployment(self, credentials: k8s.core.v1.Secret) -> k8s.apps.v1.Deployment:
        weights_gib, replicas = self._settings.weights_gib, self._settings.replicas
        manifest = deployment_manifest(self._settings)
        return k8s.apps.v1.Deployment(
            f"{self._name}-deployment",
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=self._in_namespace.merge(
                pulumi.ResourceOptions(
                    depends_on=[credentials],
                    # Pulumi waits for the rollout; its default 10 minutes ends before a first download does.
                    custom_timeouts=pulumi.CustomTimeouts(
                        create=f"{replica_ready_seconds(weights_gib)}s",
                        update=f"{rollout_seconds(weights_gib, replicas)}s",
                    ),
                )
            ),
        )

    def _monitoring(self) -> None:
        """The ServiceMonitor and PrometheusRule (after the operator's CRDs) and the Grafana dashboard."""
        with_crds = self._in_namespace.merge(
            pulumi.ResourceOptions(depends_on=[*self._args.monitoring_depends_on])
        )
        for suffix, manifest in (
            ("service-monitor", service_monitor(self._settings)),
            ("alerts", prometheus_rule(self._settings)),
        ):
            k8s.apiextensions.CustomResource(
                f"{self._name}-{suffix}",
                api_version=manifest["apiVersion"],
                kind=manifest["kind"],
                metadata=manifest["metadata"],
                spec=manifest["spec"],
                opts=with_crds,
            )
        dashboard = dashboard_configmap(f"{APP_NAME}-dashboard", self._settings.namespace, vllm_dashboard())
        k8s.core.v1.ConfigMap(
            f"{self._name}-dashboard",
            metadata=dashboard["metadata"],
            data=dashboard["data"],
            opts=self._in_namespace,
        )
