"""The endpoint's Network Load Balancer as the AWS Load Balancer Controller builds it from one Service.

Each annotation below is in the controller's Service annotation reference at v3.5.0
(docs/guide/service/annotations.md; tests check every `aws-load-balancer-*` name against it), and what it does
was read in the controller's code at v3.5.0 (pkg/service/model_build_*.go):
- `spec.loadBalancerClass: service.k8s.aws/nlb` hands the Service to the controller; the in-tree cloud
  provider ignores Services with a class. The class cannot change once set: an NLB made by another controller
  is not taken over (a Service that had one is replaced, with a new DNS name).
- Target type `ip`: the NLB sends connections straight to the pods' IPs, no NodePorts
  (`allocateLoadBalancerNodePorts: false`, allowed for IP targets only).
- `preserve_client_ip.enabled=true`: AWS turns client IP preservation off by default for IP targets over TCP
  (ELB user guide, "Edit target group attributes": IP type target groups (TCP, TLS): disabled); on, the pods
  see each client's address, so the NetworkPolicy in front of them can admit exactly the configured ranges.
  Health checks still come from the NLB's own addresses in its subnets.
- `aws-load-balancer-subnets`: the NLB's nodes live in the public subnets, which hold no pods, for an internal
  scheme too (it then gets only private addresses there). Admitting the public subnets' CIDRs thus admits the
  health checks and no pod.
- TLS: with a certificate the Service's one port is 443 and `ssl-ports` makes it a TLS listener that forwards
  plain TCP to the pod (`backend-protocol` stays tcp); `ELBSecurityPolicy-TLS13-1-2-2021-06` accepts TLS 1.3
  and 1.2 only (the controller's default, ELBSecurityPolicy-2016-08, still takes TLS 1.0).
- Client ranges: from v2.6 the controller gives the NLB a security group of its own and opens each Service
  port to each `spec.loadBalancerSourceRanges` entry only (0.0.0.0/0 when there are none); docs/guide/service/
  nlb.md, "Security group". The pods' side admits the NLB through a backend group the controller manages.
- The NetworkPolicy admits the client ranges as `ipBlock`s, which the VPC CNI's policy agent matches against pod
  addresses too: the private subnets (nodes and pods) are cut out of every range that holds them, so a range
  such as the VPC's own CIDR never lets the cluster's pods past llm:clientNamespaces.
- Without TLS the listener is plain TCP, whose idle timeout may be raised (`listener-attributes.TCP-80`,
  60-6000 s; default 350 s): a request held while a replica starts, or a completion that is not streamed, sends
  nothing for minutes. A TLS listener's is fixed at 350 s (ELB user guide, "Update the TCP idle timeout"), so
  the hold is kept below it there (stacks/autoscaling.py).
- Pod readiness gates: the backend's namespace carries `elbv2.k8s.aws/pod-readiness-gate-inject: enabled`, so a
  new pod turns Ready only once the NLB finds it healthy and a rollout never leaves the NLB without a target
  (docs/deploy/pod_readiness_gate.md; the chart's pod webhook fails open).
- `load_balancing.cross_zone.enabled=true`: a single replica sits in one zone; without cross-zone balancing the
  NLB node of another zone has no healthy target and clients resolving to it wait for DNS to drop it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from components.autoscaling.values import RESPONSE_HEADER_TIMEOUT_SECONDS
from components.ingress.values import LOAD_BALANCER_CLASS
from components.network.layout import subnet_cidrs
from stacks.config import LlmSettings
from stacks.config.schema import ANYWHERE

SERVICE_NAME = "llm-endpoint"
TLS_PORT = 443
PLAIN_PORT = 80
# TLS 1.3 and 1.2 only (ELB user guide, "Security policies for your Network Load Balancer").
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
ANNOTATION_PREFIX = "service.beta.kubernetes.io/"
# A plain TCP listener's idle timeout may be 60 to 6000 s (ELB API reference, ListenerAttribute).
MAX_IDLE_TIMEOUT_SECONDS = 6000
READINESS_GATE_LABELS = {"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"}


@dataclass(frozen=True)
class LoadBalancerSettings:
    """What the endpoint's load balancer is: its scheme, TLS, and who may reach it."""

    scheme: str
    certificate_arn: str | None
    hostname: str | None
    # The client CIDRs admitted by the NLB's security group and by the NetworkPolicy in front of the pods.
    client_cidrs: tuple[str, ...]
    # The public subnets' CIDRs, where the NLB's nodes (and so its health checks) are.
    node_cidrs: tuple[str, ...]
    # The private subnets' CIDRs, where the nodes and pods are: never admitted as clients.
    pod_cidrs: tuple[str, ...]
    # How long a plain TCP listener keeps a silent connection: the longest a request may wait for its first byte.
    idle_timeout_seconds: int

    @property
    def tls(self) -> bool:
        return self.certificate_arn is not None

    @property
    def port(self) -> int:
        return TLS_PORT if self.tls else PLAIN_PORT

    @property
    def public_url(self) -> str | None:
        """The OpenAI base URL clients use over TLS, or None without TLS."""
        return f"https://{self.hostname}/v1" if self.tls else None


def load_balancer_settings(
    llm: LlmSettings, vpc_cidr: str, az_count: int, hold_seconds: int
) -> LoadBalancerSettings | None:
    """The load balancer llm:serviceType LoadBalancer asks for, or None. Without llm:loadBalancerSourceRanges an
    internal one admits the VPC and an internet-facing one (allowed only when open on purpose) everyone.
    `hold_seconds`: how long a request may be held for a replica to start (0 without scale to zero)."""
    if llm.service_type != "LoadBalancer":
        return None
    default = ANYWHERE if llm.load_balancer_open_to_internet else vpc_cidr
    zones = subnet_cidrs(vpc_cidr, az_count)
    return LoadBalancerSettings(
        scheme=llm.load_balancer_scheme,
        certificate_arn=llm.load_balancer_certificate_arn,
        hostname=llm.endpoint_hostname,
        client_cidrs=llm.load_balancer_source_ranges or (default,),
        node_cidrs=tuple(zone.public for zone in zones),
        pod_cidrs=tuple(zone.private for zone in zones),
        idle_timeout_seconds=min(MAX_IDLE_TIMEOUT_SECONDS, hold_seconds + RESPONSE_HEADER_TIMEOUT_SECONDS),
    )


@dataclass(frozen=True)
class Backend:
    """The pods the NLB sends connections to: the model server's, or with scale to zero the interceptor's."""

    namespace: str
    selector: dict[str, str]
    port: int


def load_balancer_annotations(settings: LoadBalancerSettings, subnets: Any) -> dict[str, Any]:
    """`subnets`: the public subnets' IDs, comma-separated (an Output in the program, known only once they exist;
    every other annotation is known at preview, where the policy pack reads them)."""
    annotations = {
        "aws-load-balancer-scheme": settings.scheme,
        "aws-load-balancer-nlb-target-type": "ip",
        "aws-load-balancer-subnets": subnets,
        "aws-load-balancer-target-group-attributes": "preserve_client_ip.enabled=true",
        "aws-load-balancer-attributes": "load_balancing.cross_zone.enabled=true",
    }
    if settings.certificate_arn is not None:
        annotations |= {
            "aws-load-balancer-ssl-cert": settings.certificate_arn,
            "aws-load-balancer-ssl-ports": str(TLS_PORT),
            "aws-load-balancer-ssl-negotiation-policy": TLS_POLICY,
        }
    else:
        annotations[f"aws-load-balancer-listener-attributes.TCP-{PLAIN_PORT}"] = (
            f"tcp.idle_timeout.seconds={settings.idle_timeout_seconds}"
        )
    return {ANNOTATION_PREFIX + name: value for name, value in annotations.items()}


def endpoint_service(settings: LoadBalancerSettings, backend: Backend, subnets: Any) -> dict[str, Any]:
    """The Service the controller turns into the NLB: one listener, on 443 with TLS (80 without)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": SERVICE_NAME,
            "namespace": backend.namespace,
            "labels": {"app.kubernetes.io/name": SERVICE_NAME, "app.kubernetes.io/managed-by": "pulumi"},
            "annotations": load_balancer_annotations(settings, subnets),
        },
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": LOAD_BALANCER_CLASS,
            "allocateLoadBalancerNodePorts": False,
            "loadBalancerSourceRanges": list(settings.client_cidrs),
            "selector": backend.selector,
            "ports": [
                {
                    "name": "https" if settings.tls else "http",
                    "port": settings.port,
                    "targetPort": backend.port,
                    "protocol": "TCP",
                }
            ],
        },
    }


def admitted_peers(settings: LoadBalancerSettings) -> list[dict[str, Any]]:
    """The NetworkPolicy peers for connections through the NLB: the client ranges (their addresses are
    preserved) less the subnets of the cluster's pods, and the NLB's own subnets (its health checks), each once."""
    peers = []
    for cidr in dict.fromkeys((*settings.client_cidrs, *settings.node_cidrs)):
        network = ipaddress.IPv4Network(cidr)
        inside = [pods for pods in settings.pod_cidrs if ipaddress.IPv4Network(pods).subnet_of(network)]
        peers.append({"ipBlock": {"cidr": cidr, "except": inside} if inside else {"cidr": cidr}})
    return peers
