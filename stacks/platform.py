"""The whole platform for one stack: components composed in dependency order, and the stack's outputs."""

from __future__ import annotations

from typing import Any

import pulumi
from pydantic import SecretStr

from components.autoscaling.component import Autoscaling, AutoscalingArgs
from components.cluster.component import Cluster, ClusterArgs
from components.cluster.kubeconfig import update_kubeconfig_command
from components.cluster.preview_access import PreviewAccess, PreviewAccessArgs
from components.gpu.component import GpuSupport, GpuSupportArgs
from components.gpu.values import GPU_NAMESPACE
from components.ingress.component import LoadBalancerController, LoadBalancerControllerArgs
from components.ingress.manifests import LoadBalancerSettings, load_balancer_settings
from components.karpenter.component import Karpenter, KarpenterArgs
from components.karpenter.nodes import NodeSettings
from components.karpenter.values import NAMESPACE as KARPENTER_NAMESPACE
from components.monitoring.component import Monitoring, MonitoringArgs
from components.monitoring.values import MONITORING_NAMESPACE
from components.network.component import Network, NetworkArgs
from components.registry.component import ImageCache, ImageCacheArgs
from components.serving.component import ModelServer, ModelServerArgs, require_model_access
from components.serving.manifests import (
    DEFAULT_NAMESPACE,
    ServingSettings,
    load_balancer_backend,
    scales_to_zero,
    serving_settings,
    weights_prefix,
)
from components.weights.component import ModelWeights, ModelWeightsArgs
from stacks.catalogs.instances import gpu_instance_types
from stacks.config import PlatformConfig


def node_settings(config: PlatformConfig) -> NodeSettings:
    return NodeSettings(
        stack=config.stack,
        ami_alias=config.cluster.node_ami_alias,
        root_volume_gib=config.cluster.node_root_volume_gib,
        gpu_instance_types=gpu_instance_types(config.instance, config.llm.instance_family_fallback),
        capacity_types=config.llm.capacity_types,
        gpu_limit=config.serving.gpu_limit,
    )


def model_serving(config: PlatformConfig) -> ServingSettings:
    """What the model server's manifests are built from: the llm settings, catalog entries and the plan."""
    return serving_settings(
        config.llm,
        config.model,
        config.instance,
        config.serving,
        config.startup,
        config.scaling,
        endpoint_load_balancer(config),
        config.region,
        namespace=DEFAULT_NAMESPACE,
    )


def endpoint_load_balancer(config: PlatformConfig) -> LoadBalancerSettings | None:
    """The endpoint's NLB, as llm:serviceType LoadBalancer asks for it; it waits as long as a request is held."""
    scaling = config.scaling
    hold = scaling.hold_seconds if scaling is not None and scaling.scale_to_zero else 0
    return load_balancer_settings(config.llm, config.network.cidr, config.network.az_count, hold)


def secret_output(value: SecretStr | None) -> pulumi.Output[str] | None:
    """A config secret as a Pulumi secret Output, so state, previews and the plan mask it."""
    return None if value is None else pulumi.Output.secret(value.get_secret_value())


def build_platform(config: PlatformConfig, deploying: bool) -> dict[str, Any]:
    """Register every component; `deploying` is true for `pulumi up`, false for a preview or the plan."""
    for warning in config.warnings:
        pulumi.log.warn(warning)
    serving = model_serving(config)
    if deploying:
        # A gated model without a Hugging Face token stops `pulumi up` here, before anything is built.
        require_model_access(serving)
    network = Network(
        "network",
        NetworkArgs(
            stack=config.stack,
            name=config.name,
            cluster_name=config.name,
            region=config.region,
            settings=config.network,
        ),
    )
    cluster = Cluster(
        "cluster",
        ClusterArgs(
            stack=config.stack,
            name=config.name,
            region=config.region,
            settings=config.cluster,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            # The Karpenter controller runs on Fargate, so no node has to exist before it.
            fargate_namespaces=(KARPENTER_NAMESPACE,),
            aws_profile=config.aws.profile,
            # CoreDNS, the first pods, pull their images through the NAT routes.
            depends_on=[network],
        ),
    )
    karpenter = Karpenter(
        "karpenter",
        KarpenterArgs(
            name=config.name,
            region=config.region,
            nodes=node_settings(config),
            cluster_name=cluster.name,
            cluster_endpoint=cluster.endpoint,
            oidc_provider_arn=cluster.oidc_provider_arn,
            oidc_provider_url=cluster.oidc_provider_url,
            provider=cluster.provider,
            # The controller's pods run on the cluster's Fargate profile for KARPENTER_NAMESPACE.
            depends_on=[cluster.eks],
        ),
    )
    # Charts install once Karpenter runs and its NodePools exist, so their pods get nodes bought.
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            provider=cluster.provider,
            settings=config.monitoring,
            stack=config.stack,
            stack_name=config.name,
            zone=network.availability_zones[0],
            cluster_name=cluster.name,
            oidc_provider_arn=cluster.oidc_provider_arn,
            oidc_provider_url=cluster.oidc_provider_url,
            depends_on=[karpenter],
        ),
    )
    gpu = GpuSupport(
        "gpu",
        GpuSupportArgs(
            provider=cluster.provider,
            monitoring_release=monitoring.release,
            dashboard_namespace=monitoring.namespace,
            depends_on=[karpenter],
        ),
    )
    weights = ModelWeights(
        "model-weights",
        ModelWeightsArgs(
            stack=config.stack,
            stack_name=config.name,
            namespace=serving.namespace,
            prefix=weights_prefix(serving),
            keep_bucket=config.llm.keep_weights_bucket,
            oidc_provider_arn=cluster.oidc_provider_arn,
            oidc_provider_url=cluster.oidc_provider_url,
        ),
    )
    image_cache = (
        ImageCache(
            "image-cache",
            ImageCacheArgs(
                stack_name=config.name,
                region=config.region,
                credentials_arn=config.llm.docker_hub_credentials_arn,
                image=config.llm.vllm_image,
                node_role_name=karpenter.node_role_name,
            ),
        )
        if config.llm.docker_hub_credentials_arn is not None
        else None
    )
    autoscaling = (
        Autoscaling(
            "autoscaling",
            AutoscalingArgs(
                provider=cluster.provider,
                settings=serving,
                monitoring_release=monitoring.release,
                depends_on=[karpenter],
            ),
        )
        if config.scaling is not None
        else None
    )
    image = image_cache.image if image_cache is not None else config.llm.vllm_image
    model_server = ModelServer(
        "model-server",
        ModelServerArgs(
            settings=serving,
            provider=cluster.provider,
            weights=weights,
            image=image,
            api_key=secret_output(config.llm.api_key),
            hf_token=secret_output(config.llm.hf_token),
            # GPU pods need the NodePools to get a node and the device plugin to see its GPUs (and, through
            # the cache, the nodes' right to pull through it).
            depends_on=[karpenter, gpu, *([image_cache] if image_cache is not None else [])],
            monitoring_depends_on=[monitoring.release],
            autoscaling_depends_on=autoscaling.releases if autoscaling is not None else (),
        ),
    )
    load_balancer = (
        LoadBalancerController(
            "load-balancer",
            LoadBalancerControllerArgs(
                stack=config.stack,
                stack_name=config.name,
                region=config.region,
                settings=serving.load_balancer,
                backend=load_balancer_backend(serving),
                provider=cluster.provider,
                cluster_name=cluster.name,
                vpc_id=network.vpc_id,
                public_subnet_ids=network.public_subnet_ids,
                oidc_provider_arn=cluster.oidc_provider_arn,
                oidc_provider_url=cluster.oidc_provider_url,
                monitoring_release=monitoring.release,
                depends_on=[karpenter],
                # With scale to zero the NLB targets the interceptors, else the model server's pods.
                backend_depends_on=[autoscaling]
                if autoscaling is not None and scales_to_zero(serving)
                else [model_server.namespace_resource],
            ),
        )
        if serving.load_balancer is not None
        else None
    )
    if config.cluster.preview_role_arns:
        PreviewAccess(
            "preview-access",
            PreviewAccessArgs(
                provider=cluster.provider,
                namespaces=(KARPENTER_NAMESPACE, MONITORING_NAMESPACE, GPU_NAMESPACE),
                depends_on=[karpenter, monitoring, gpu],
            ),
        )
    public_url = serving.load_balancer.public_url if serving.load_balancer is not None else None
    return {
        "region": config.region,
        "cluster_name": cluster.name,
        "kubeconfig": cluster.kubeconfig,
        "update_kubeconfig_command": cluster.name.apply(
            lambda name: update_kubeconfig_command(config.region, name, config.aws.profile)
        ),
        "oidc_provider_arn": cluster.oidc_provider_arn,
        "vpc_id": network.vpc_id,
        "public_subnet_ids": network.public_subnet_ids,
        "private_subnet_ids": network.private_subnet_ids,
        "karpenter_node_role": karpenter.node_role_name,
        "karpenter_interruption_queue": karpenter.interruption_queue_name,
        "grafana_port_forward_command": monitoring.grafana_port_forward_command,
        "grafana_admin_password": monitoring.grafana_admin_password,
        "grafana_dashboards": [*gpu.dashboards, *model_server.dashboards],
        "model": config.model.id,
        "max_model_len": config.serving.max_model_len,
        "tensor_parallel_size": config.serving.tensor_parallel_size,
        "weights_bucket": weights.bucket_name,
        "model_uri": weights.model_uri,
        "vllm_image": image,
        "endpoint_service": model_server.endpoint_service,
        "endpoint_port": model_server.endpoint_port,
        "endpoint_url": public_url or model_server.in_cluster_url,
        **({"load_balancer_hostname": load_balancer.hostname} if load_balancer is not None else {}),
        "port_forward_command": model_server.port_forward_command,
        "api_key": model_server.api_key,
        "chat_completion_curl": model_server.curl_command,
    }
