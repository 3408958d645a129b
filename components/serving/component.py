"""ModelServer: one model served by vLLM behind an OpenAI-compatible API, in its own namespace.

It creates the namespace, the credentials Secret (the API key, generated unless configured, and the Hugging
Face token), the ServiceAccounts of the model server and of the staging Job (IRSA roles from ModelWeights),
the Job that stages the model revision into the bucket, the Deployment sized by the serving plan (after the
Job), the Service, a PodDisruptionBudget when there is more than one replica, the ServiceMonitor and
PrometheusRule (which need the Prometheus Operator's CRDs, hence `monitoring_depends_on`) and the Grafana
dashboard. The manifests come from the pure builders in components/serving and components/weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.autoscaling.manifests import (
    interceptor_route,
    scaled_object,
    starting_network_policy,
    starting_responder,
)
from components.monitoring.dashboards import dashboard_configmap
from components.serving.alerts import prometheus_rule
from components.serving.budget import replica_ready_seconds, rollout_seconds
from components.serving.dashboard import VLLM_DASHBOARD_TITLE, vllm_dashboard
from components.serving.manifests import (
    APP_NAME,
    ModelSource,
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
    staging_settings,
)
from components.weights.component import ModelWeights
from components.weights.layout import SERVER_SERVICE_ACCOUNT, STAGER_SERVICE_ACCOUNT
from components.weights.staging import (
    ingress_lockdown,
    script_configmap,
    service_account,
    staging_job,
)
from stacks.autoscaling import ScalingPolicy

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
    # The bucket the model revision is staged into, and the IRSA roles that read and write it.
    weights: ModelWeights
    # The vLLM image: llm:vllmImage, or the same through the stack's ECR pull-through cache.
    image: pulumi.Input[str]
    # The API key clients must send (a Pulumi secret); None: one is generated.
    api_key: pulumi.Output[str] | None = None
    # The Hugging Face token for gated models (a Pulumi secret).
    hf_token: pulumi.Output[str] | None = None
    # What must exist before pods can be scheduled (Karpenter, its NodePools, the GPU device plugin).
    depends_on: Sequence[pulumi.Resource] = ()
    # The kube-prometheus-stack release, whose CRDs the ServiceMonitor and PrometheusRule need.
    monitoring_depends_on: Sequence[pulumi.Resource] = ()
    # KEDA and its HTTP add-on, whose CRDs the ScaledObject and InterceptorRoute need (autoscaling on).
    autoscaling_depends_on: Sequence[pulumi.Resource] = ()


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
    namespace_resource: k8s.core.v1.Namespace
    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service

    def __init__(self, name: str, args: ModelServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("selfhost:index:ModelServer", name, None, opts)
        settings = args.settings
        self._name, self._args, self._settings = name, args, settings

        self.namespace_resource = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=namespace_manifest(settings)["metadata"],
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[*args.depends_on]),
        )
        self._in_namespace = pulumi.ResourceOptions(
            parent=self, provider=args.provider, depends_on=[self.namespace_resource]
        )
        self.api_key = pulumi.Output.secret(self._api_key())
        credentials = self._credentials()
        staged = self._staging(credentials, args.image)
        reader = self._service_account(SERVER_SERVICE_ACCOUNT, args.weights.reader_role_arn)
        self.deployment = self._deployment(
            ModelSource(uri=args.weights.model_uri, image=args.image), [credentials, reader, staged]
        )
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
        if settings.scaling is not None:
            self._scaling(settings.scaling)
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

    def _service_account(self, name: str, role_arn: pulumi.Input[str]) -> k8s.core.v1.ServiceAccount:
        manifest = service_account(
            self._settings.namespace, name, role_arn, {"app.kubernetes.io/managed-by": "pulumi"}
        )
        return k8s.core.v1.ServiceAccount(
            f"{self._name}-{name}-service-account",
            metadata=manifest["metadata"],
            automount_service_account_token=manifest["automountServiceAccountToken"],
            opts=self._in_namespace,
        )

    def _staging(self, credentials: k8s.core.v1.Secret, image: pulumi.Input[str]) -> k8s.batch.v1.Job:
        """The Job that copies the model revision into the bucket; `pulumi up` waits for it to complete."""
        staging = staging_settings(self._settings, image)
        writer = self._service_account(STAGER_SERVICE_ACCOUNT, self._args.weights.writer_role_arn)
        script = script_configmap(staging)
        configmap = k8s.core.v1.ConfigMap(
            f"{self._name}-stage-weights-script",
            metadata=script["metadata"],
            data=script["data"],
            opts=self._in_namespace,
        )
        lockdown = ingress_lockdown(staging)
        k8s.networking.v1.NetworkPolicy(
            f"{self._name}-stage-weights-network-policy",
            metadata=lockdown["metadata"],
            spec=lockdown["spec"],
            opts=self._in_namespace,
        )
        manifest = staging_job(staging, self._args.weights.bucket_name)
        limit = manifest["spec"]["activeDeadlineSeconds"]
        return k8s.batch.v1.Job(
            f"{self._name}-stage-weights",
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=self._in_namespace.merge(
                pulumi.ResourceOptions(
                    depends_on=[credentials, writer, configmap],
                    # The Job's own deadline ends it first; its failure then fails `pulumi up` with its message.
                    custom_timeouts=pulumi.CustomTimeouts(create=f"{limit + 60}s", update=f"{limit + 60}s"),
                )
            ),
        )

    def _deployment(
        self, source: ModelSource, depends_on: Sequence[pulumi.Resource]
    ) -> k8s.apps.v1.Deployment:
        budget, replicas = self._settings.startup, self._settings.replicas
        manifest = deployment_manifest(self._settings, source)
        return k8s.apps.v1.Deployment(
            f"{self._name}-deployment",
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=self._in_namespace.merge(
                pulumi.ResourceOptions(
                    depends_on=[*depends_on],
                    # Pulumi waits for the rollout; its default 10 minutes can end before a new node serves.
                    custom_timeouts=pulumi.CustomTimeouts(
                        create=f"{replica_ready_seconds(budget)}s",
                        update=f"{rollout_seconds(budget, replicas)}s",
                    ),
                )
            ),
        )

    def _scaling(self, policy: ScalingPolicy) -> None:
        """The ScaledObject and, with scale to zero, the route through the interceptor and its fallback."""
        with_crds = self._in_namespace.merge(
            pulumi.ResourceOptions(depends_on=[*self._args.autoscaling_depends_on])
        )
        before_scaling: list[pulumi.Resource] = [self.deployment]
        if policy.scale_to_zero:
            program, responder, service = starting_responder(self._settings, policy)
            k8s.core.v1.ConfigMap(
                f"{self._name}-starting-program",
                metadata=program["metadata"],
                data=program["data"],
                opts=self._in_namespace,
            )
            k8s.apps.v1.Deployment(
                f"{self._name}-starting",
                metadata=responder["metadata"],
                spec=responder["spec"],
                opts=self._in_namespace,
            )
            k8s.core.v1.Service(
                f"{self._name}-starting-service",
                metadata=service["metadata"],
                spec=service["spec"],
                opts=self._in_namespace,
            )
            responder_policy = starting_network_policy(self._settings)
            k8s.networking.v1.NetworkPolicy(
                f"{self._name}-starting-network-policy",
                metadata=responder_policy["metadata"],
                spec=responder_policy["spec"],
                opts=self._in_namespace,
            )
            route = interceptor_route(self._settings, policy)
            before_scaling.append(_custom_resource(f"{self._name}-route", route, with_crds))
        # After the route: before it exists KEDA reads an empty metric spec and the HPA falls back to CPU.
        scaler = scaled_object(self._settings, policy)
        _custom_resource(
            f"{self._name}-scaled-object",
            scaler,
            with_crds.merge(
                pulumi.ResourceOptions(depends_on=[*self._args.autoscaling_depends_on, *before_scaling])
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
            _custom_resource(f"{self._name}-{suffix}", manifest, with_crds)
        dashboard = dashboard_configmap(
            f"{APP_NAME}-dashboard", self._settings.namespace, vllm_dashboard(self._settings)
        )
        k8s.core.v1.ConfigMap(
            f"{self._name}-dashboard",
            metadata=dashboard["metadata"],
            data=dashboard["data"],
            opts=self._in_namespace,
        )


def _custom_resource(
    name: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions
) -> k8s.apiextensions.CustomResource:
    """A custom resource registered from its manifest, as the builders return it."""
    return k8s.apiextensions.CustomResource(
        name,
        api_version=manifest["apiVersion"],
        kind=manifest["kind"],
        metadata=manifest["metadata"],
        spec=manifest["spec"],
        opts=opts,
    )
