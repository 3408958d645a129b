"""The VPC: public and private subnets in each availability zone, NAT, an S3 gateway endpoint, and the
subnet tags that EKS, load balancers and Karpenter discover subnets by.

Nodes and Fargate pods live in the private subnets and reach the internet through NAT; the public subnets
hold only the NAT gateways and internet-facing load balancers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.network.layout import (
    nat_gateway_count,
    nat_gateway_for_zone,
    network_tags,
    pick_zones,
    private_subnet_tags,
    public_subnet_tags,
    subnet_cidrs,
)
from stacks.config import NetworkSettings


@dataclass
class NetworkArgs:
    # The stack (for cost tags) and its name prefix (PlatformConfig.name) for AWS object names.
    stack: str
    name: str
    cluster_name: str
    region: str
    settings: NetworkSettings


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[list[str]]
    private_subnet_ids: pulumi.Output[list[str]]
    availability_zones: pulumi.Output[list[str]]

    def __init__(self, resource_name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("selfhost:index:Network", resource_name, None, opts)
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        name = args.name

        # Local Zones and Wavelength Zones need an opt-in and cannot host EKS control-plane subnets.
        self.availability_zones = aws.get_availability_zones_output(
            state="available",
            filters=[
                aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])
            ],
            opts=pulumi.InvokeOutputOptions(parent=self),
        ).apply(lambda zones: pick_zones(zones.names, zones.zone_ids, args.settings.az_count))
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.settings.cidr,
            enable_dns_support=True,
            # EKS needs DNS hostnames for the private API endpoint and for nodes to register.
            enable_dns_hostnames=True,
            tags=self._tags(name),
            opts=self._child,
        )
        # Adopting the default security group strips its allow-all rules; nothing here uses it.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg", vpc_id=vpc.id, tags=self._tags(f"{name}-default-unused"), opts=self._child
        )
        public_subnets, private_subnets = self._subnets(vpc)
        nat_gateways = self._public_routing(vpc, public_subnets)
        private_route_tables = self._private_routing(vpc, private_subnets, nat_gateways)
        # ECR serves image layers from S3, so layer pulls (the vLLM image is several GB) skip the NAT's
        # per-GB charge; a gateway endpoint costs nothing.
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[table.id for table in private_route_tables],
            tags=self._tags(f"{name}-s3"),
            opts=self._child,
        )

        self.vpc_id = vpc.id
        self.public_subnet_ids = pulumi.Output.all(*[subnet.id for subnet in public_subnets])
        self.private_subnet_ids = pulumi.Output.all(*[subnet.id for subnet in private_subnets])
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
                "availability_zones": self.availability_zones,
            }
        )

    def _tags(self, name: str) -> dict[str, str]:
        return network_tags(self._args.stack, name)

    def _subnets(self, vpc: aws.ec2.Vpc) -> tuple[list[aws.ec2.Subnet], list[aws.ec2.Subnet]]:
        stack, name, cluster_name = self._args.stack, self._args.name, self._args.cluster_name
        public: list[aws.ec2.Subnet] = []
        private: list[aws.ec2.Subnet] = []
        for index, cidrs in enumerate(subnet_cidrs(self._args.settings.cidr, self._args.settings.az_count)):
            zone = self.availability_zones[index]
            public.append(
                aws.ec2.Subnet(
                    f"{name}-public-{index}",
                    vpc_id=vpc.id,
                    availability_zone=zone,
                    cidr_block=cidrs.public,
                    # Only NAT gateways and load balancers live here; neither needs an auto-assigned IP.
                    map_public_ip_on_launch=False,
                    tags=zone.apply(lambda z: public_subnet_tags(stack, name, z)),
                    opts=self._child,
                )
            )
            private.append(
                aws.ec2.Subnet(
                    f"{name}-private-{index}",
                    vpc_id=vpc.id,
                    availability_zone=zone,
                    cidr_block=cidrs.private,
                    tags=zone.apply(lambda z: private_subnet_tags(stack, name, cluster_name, z)),
                    opts=self._child,
                )
            )
        return public, private

    def _public_routing(self, vpc: aws.ec2.Vpc, subnets: list[aws.ec2.Subnet]) -> list[aws.ec2.NatGateway]:
        """Public subnets route to the internet gateway; NAT gateways sit in the first one or in each."""
        name, settings = self._args.name, self._args.settings
        internet_gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags=self._tags(name), opts=self._child
        )
        table = aws.ec2.RouteTable(
            f"{name}-public-rt", vpc_id=vpc.id, tags=self._tags(f"{name}-public"), opts=self._child
        )
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=table.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=internet_gateway.id,
            opts=self._child,
        )
        for index, subnet in enumerate(subnets):
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{index}-rta", route_table_id=table.id, subnet_id=subnet.id, opts=self._child
            )
        gateways = []
        for index in range(nat_gateway_count(settings.nat_gateways, settings.az_count)):
            address = aws.ec2.Eip(
                f"{name}-nat-{index}-eip",
                domain="vpc",
                tags=self._tags(f"{name}-nat-{index}"),
                opts=self._child,
            )
            gateways.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{index}",
                    allocation_id=address.id,
                    subnet_id=subnets[index].id,
                    connectivity_type="public",
                    tags=self._tags(f"{name}-nat-{index}"),
                    # A public NAT gateway forwards only once the VPC has an internet gateway.
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[internet_gateway]),
                )
            )
        return gateways

    def _private_routing(
        self, vpc: aws.ec2.Vpc, subnets: list[aws.ec2.Subnet], nat_gateways: list[aws.ec2.NatGateway]
    ) -> list[aws.ec2.RouteTable]:
        """One route table per private subnet, its default route through the zone's (or the shared) NAT."""
        name, mode = self._args.name, self._args.settings.nat_gateways
        tables = []
        for index, subnet in enumerate(subnets):
            table = aws.ec2.RouteTable(
                f"{name}-private-{index}-rt",
                vpc_id=vpc.id,
                tags=self._tags(f"{name}-private-{index}"),
                opts=self._child,
            )
            # A Route resource rather than inline routes, which claim the whole table; the S3 endpoint adds
            # its own route here.
            aws.ec2.Route(
                f"{name}-private-{index}-default",
                route_table_id=table.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nat_gateways[nat_gateway_for_zone(mode, index)].id,
                opts=self._child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{index}-rta", route_table_id=table.id, subnet_id=subnet.id, opts=self._child
            )
            tables.append(table)
        return tables
