import json
from collections import Counter
from pathlib import Path

import pytest

from selfhost.cli import main
from selfhost.plan.command import write_plan
from selfhost.plan.diff import (
    MISSING,
    InputChange,
    PlanFiles,
    diff_markdown,
    diff_plans,
    input_changes,
    property_path,
    read_plan,
)

# The pull request's change: a NAT gateway per AZ (3 AZs by default) and two replicas of the model.
# A pull request that gives every AZ its NAT gateway and lets dev scale to three replicas.
PR_OVERRIDES = {"network:natGateways": "perAz", "autoscaling:maxReplicas": "3"}


@pytest.fixture(scope="module")
def two_plans(tmp_path_factory, dev_plan, plan_with) -> tuple[Path, Path]:
    """The dev plan as on the base branch and as a pull request that changes it, written as the CLI would."""
    root = tmp_path_factory.mktemp("plans")
    write_plan(dev_plan, root / "base")
    write_plan(plan_with(PR_OVERRIDES), root / "pr")
    return root / "base", root / "pr"


def test_real_plans_differ_in_cost_by_the_hand_calculated_amount(two_plans):
    diff = diff_plans(read_plan(two_plans[0]), read_plan(two_plans[1]))
    items = {item.name: (item.old, item.new) for item in diff.cost_items}
    # NAT: 1 x ($0.045 + $0.005 IPv4) -> 3 x $0.05. GPU nodes at the peak: 2 -> 3 g6.xlarge at $0.8048. Root
    # volumes: (GPU nodes + 1 system node) x 50 GiB x $0.08 / 730 h = 3 x 0.005479 -> 4 x 0.005479
    # (0.016438 -> 0.021918).
    assert items["NAT gateways"] == (pytest.approx(0.05), pytest.approx(0.15))
    assert items["GPU nodes"] == (pytest.approx(1.6096), pytest.approx(2.4144))
    assert items["Node root volumes"] == (pytest.approx(0.0164, abs=1e-4), pytest.approx(0.0219, abs=1e-4))
    assert set(items) == {"NAT gateways", "GPU nodes", "Node root volumes"}
    # 0.10 + 0.8048 + 0.005479 = 0.910279, from totals rounded to 4 places.
    assert diff.cost_after - diff.cost_before == pytest.approx(0.9103, abs=2e-4)


def test_real_plans_differ_by_two_nat_gateways_and_their_routes(two_plans):
    base, pr = read_plan(two_plans[0]), read_plan(two_plans[1])
    diff = diff_plans(base, pr)
    added_network = Counter(key.split("`")[1] for key in diff.added if key.startswith("`aws:ec2/"))
    # Two more AZs get their own NAT gateway, each with its Elastic IP; nothing is removed.
    assert added_network == {"aws:ec2/natGateway:NatGateway": 2, "aws:ec2/eip:Eip": 2}
    assert diff.removed == []
    route_changes = [r for r in diff.changed if r.key.startswith("`aws:ec2/route:Route`")]
    # The private routes of AZs 1 and 2 now leave through their own NAT gateway instead of AZ 0's.
    assert len(route_changes) == 2
    assert all([c.path for c in r.changes] == ["natGatewayId"] for r in route_changes)
    assert diff.unchanged + len(diff.changed) + len(diff.added) == len(pr.resources)
    assert diff.unchanged + len(diff.changed) + len(diff.removed) == len(base.resources)


def test_real_plans_show_the_scaled_object_going_to_three_replicas(two_plans):
    diff = diff_plans(read_plan(two_plans[0]), read_plan(two_plans[1]))
    scalers = [r for r in diff.changed if r.key.startswith("`kubernetes:keda.sh/v1alpha1:ScaledObject`")]
    assert len(scalers) == 1
    assert InputChange("spec.maxReplicaCount", 2, 3) in scalers[0].changes


def test_markdown_of_real_plans_shows_cost_and_resources(two_plans):
    diff = diff_plans(read_plan(two_plans[0]), read_plan(two_plans[1]))
    markdown = diff_markdown(diff, "build/base")
    assert "### Offline plan diff of stack `dev`" in markdown
    # dev at its peak: 0.10 + 0.05 + 2 x 0.8048 + 0.0864 + 0.09874 + 0.024685 + 0.016438 + 0.00137 + 0.000456
    # (weights in S3) = 1.98769 -> 1.9877; the PR adds 0.910279 -> 2.89797 -> 2.8980.
    assert "$1.9877/h → $2.8980/h" in markdown
    assert "| NAT gateways | 0.0500 | 0.1500 | +$0.1000 |" in markdown
    assert "on 2 x g6.xlarge → mistralai/Mistral-7B-Instruct-v0.2 on 3 x g6.xlarge" in markdown
    assert "#### Added" in markdown and "#### Changed" in markdown and "#### Removed" not in markdown
    assert "| `natGatewayId` |" in markdown
    assert "| `spec.maxReplicaCount` | `2` | `3` |" in markdown


def test_a_plan_compared_with_itself_has_no_changes(two_plans):
    plan = read_plan(two_plans[0])
    diff = diff_plans(plan, plan)
    assert (diff.added, diff.removed, diff.changed, diff.cost_items) == ([], [], [], [])
    assert diff.unchanged == len(plan.resources)
    assert "0 added, 0 removed, 0 changed" in diff_markdown(diff, "same")


def test_cli_writes_diff_md_and_prints_it(two_plans, tmp_path, capsys):
    assert main(["plan", "dev", "--out", str(tmp_path / "new"), "--diff", str(two_plans[1])]) == 0
    written = (tmp_path / "new" / "diff.md").read_text()
    # The committed dev stack against the PR plan: the PR's 3 NAT gateways and third replica go away again.
    assert "$2.8980/h → $1.9877/h" in written
    assert "#### Removed" in written
    assert written in capsys.readouterr().out


def test_cli_refuses_a_base_that_is_no_plan_or_the_output_itself(tmp_path, capsys):
    assert main(["plan", "dev", "--out", str(tmp_path / "new"), "--diff", str(tmp_path / "missing")]) == 2
    assert "holds no plan" in capsys.readouterr().err
    assert main(["plan", "dev", "--out", str(tmp_path / "new"), "--diff", str(tmp_path / "new")]) == 2
    assert "is the output directory" in capsys.readouterr().err
    assert (tmp_path / "new" / "resources.json").is_file()


def test_input_changes_walk_objects_and_lists_of_objects_by_index():
    old = {"spec": {"replicas": 1, "containers": [{"image": "a:1"}, {"image": "b:1"}]}, "gone": True}
    new = {"spec": {"replicas": 2, "containers": [{"image": "a:2"}]}, "extra": "x"}
    assert input_changes(old, new) == [
        InputChange("extra", MISSING, "x"),
        InputChange("gone", True, MISSING),
        InputChange("spec.containers[0].image", "a:1", "a:2"),
        InputChange("spec.containers[1]", {"image": "b:1"}, MISSING),
        InputChange("spec.replicas", 1, 2),
    ]


def test_lists_of_plain_values_show_the_items_that_changed():
    assert input_changes({"args": ["--a", "--b"]}, {"args": ["--b"]}) == [
        InputChange("args[0]", "--a", MISSING)
    ]
    # An engine argument's value: the one item, in full, not the whole list cut at a width.
    old = [
        "mistralai/Mistral-7B-Instruct-v0.2",
        "--port",
        "8000",
        "--max-model-len",
        "32768",
        "--enable-prefix-caching",
    ]
    new = [*old[:4], "16384", old[5], "--enforce-eager"]
    assert input_changes({"args": old}, {"args": new}) == [
        InputChange("args[4]", "32768", "16384"),
        InputChange("args[6]", MISSING, "--enforce-eager"),
    ]


def test_the_diff_names_its_base_by_commit(tmp_path, capsys):
    # The base plan records the commit it was made from; the diff names it, not the runner's directory.
    assert main(["plan", "dev", "--out", str(tmp_path / "base")]) == 0
    base_commit = json.loads((tmp_path / "base" / "report.json").read_text())["commit"]
    assert len(base_commit) == 40
    assert main(["plan", "dev", "--out", str(tmp_path / "new"), "--diff", str(tmp_path / "base")]) == 0
    markdown = (tmp_path / "new" / "diff.md").read_text()
    assert f"Compared with the plan of commit `{base_commit[:12]}`" in markdown
    assert str(tmp_path) not in markdown


def test_json_text_inputs_are_compared_as_documents():
    old = {"policy": json.dumps({"Statement": [{"Action": "s3:GetObject", "Effect": "Allow"}]})}
    new = {"policy": json.dumps({"Statement": [{"Action": "s3:*", "Effect": "Allow"}]})}
    assert input_changes(old, new) == [InputChange("policy.Statement[0].Action", "s3:GetObject", "s3:*")]


def test_property_paths_quote_keys_that_are_not_plain_names():
    assert property_path("", "metadata") == "metadata"
    assert (
        property_path("metadata.labels", "app.kubernetes.io/name")
        == 'metadata.labels["app.kubernetes.io/name"]'
    )
    assert property_path("spec.containers", 0) == "spec.containers[0]"


def _plan(resources: list[dict], total: float, items: dict[str, float]) -> PlanFiles:
    report = {
        "stack": "dev",
        "model": "m",
        "instance_type": "g6.xlarge",
        "sizing": {"replicas": 1},
        "cost": {
            "total_usd_per_hour": total,
            "items": [{"name": name, "usd_per_hour": value} for name, value in items.items()],
        },
    }
    return PlanFiles(resources, report)


def test_repeated_type_and_name_are_told_apart_by_parent_and_items_added_or_dropped_show():
    resources = [
        {"type": "t", "name": "n", "parent": "a", "inputs": {"x": 1}},
        {"type": "t", "name": "n", "parent": "b", "inputs": {"x": 1}},
    ]
    changed = [resources[0], {**resources[1], "inputs": {"x": 2}}]
    diff = diff_plans(_plan(resources, 1.0, {"A": 1.0}), _plan(changed, 1.5, {"B": 1.5}))
    assert [r.key for r in diff.changed] == ["`t` **n** (in b)"]
    assert [(i.name, i.old, i.new) for i in diff.cost_items] == [("A", 1.0, None), ("B", None, 1.5)]
    markdown = diff_markdown(diff, "base")
    # +$0.5/h x 730 h = +$365 a month.
    assert "(+$0.5000/h, about +$365 a month)" in markdown
    assert "| A | 1.0000 | - | -$1.0000 |" in markdown


def test_long_diffs_are_cut_to_the_limit_with_a_note():
    base = [{"type": "t", "name": f"r{i}", "parent": None, "inputs": {"v": 0}} for i in range(200)]
    new = [{**resource, "inputs": {"v": 1}} for resource in base]
    markdown = diff_markdown(diff_plans(_plan(base, 1, {}), _plan(new, 1, {})), "base", max_chars=3000)
    assert len(markdown) <= 3300
    assert "more section(s) left out for length" in markdown
