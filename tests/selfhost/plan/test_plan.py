import json
import shutil
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from selfhost.cli import COMMANDS, main
from selfhost.plan import runner as plan_module
from selfhost.plan.command import write_plan
from selfhost.plan.runner import PROJECT_DIR, run_program, stack_config
from stacks.config import ConfigError

CONTRACT_FILES = ("resources.json", "report.json", "report.md")
# API groups of built-in kinds that have a dot in their name.
BUILTIN_GROUPS = ("storage.k8s.io/", "networking.k8s.io/", "policy/", "apps/", "rbac.authorization.k8s.io/")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_plan_writes_the_contract_files(stack, tmp_path, capsys):
    assert main(["plan", stack, "--out", str(tmp_path)]) == 0
    for name in CONTRACT_FILES:
        assert (tmp_path / name).is_file()
    assert (tmp_path / "manifests").is_dir() and (tmp_path / "helm").is_dir()
    resources = json.loads((tmp_path / "resources.json").read_text())
    assert all(set(r) == {"type", "name", "parent", "inputs"} for r in resources)
    report = json.loads((tmp_path / "report.json").read_text())
    for key in (
        "fits",
        "tensor_parallel_size",
        "max_model_len",
        "kv_cache_tokens",
        "gpu_memory_gib_required",
        "gpu_memory_gib_available",
    ):
        assert key in report["sizing"]
    assert report["cost"]["total_usd_per_hour"] == pytest.approx(
        sum(item["usd_per_hour"] for item in report["cost"]["items"]), abs=1e-3
    )
    assert all(set(item) >= {"name", "usd_per_hour"} for item in report["cost"]["items"])
    out = capsys.readouterr().out
    assert f"Plan for stack {stack}" in out and "Cost" in out and "TP 1" in out


def test_broken_stack_fails_with_every_error_and_writes_nothing(tmp_path, capsys):
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path)
    (tmp_path / "Pulumi.broken.yaml").write_text(
        "config:\n"
        "  llm:instanceType: t3.micro\n"
        "  llm:replicas: 1.5\n"
        "  network:azCount: 1\n"
        "  network:cidr: 300.0.0.0/16\n"
        '  cluster:publicAccessCidrs: ["198.51.100.0/24"]\n'
    )
    out = tmp_path / "out"
    assert main(["plan", "broken", "--project-dir", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "4 error(s)" in err
    for key in (
        "llm:instanceType: 't3.micro'",
        "llm:replicas: 1.5 is not valid",
        "network:azCount: 1",
        "network:cidr",
    ):
        assert key in err
    assert not out.exists()


def test_missing_stack_file_is_a_clear_error(capsys):
    assert main(["plan", "nosuchstack", "--out", "/nonexistent/never-written"]) == 2
    assert "there is no Pulumi.nosuchstack.yaml in " in capsys.readouterr().err


def test_bad_config_registers_nothing(monkeypatch):
    registered: list[str] = []
    original = plan_module._RecordingMonitor.RegisterResource

    def spy(self, request):
        registered.append(request.type)
        return original(self, request)

    monkeypatch.setattr(plan_module._RecordingMonitor, "RegisterResource", spy)
    config, secret_keys = stack_config("dev")
    config["llm:replicas"] = "-3"
    with pytest.raises(ConfigError):
        run_program("dev", config, secret_keys)
    assert [t for t in registered if t != "pulumi:pulumi:Stack"] == []


def test_secrets_never_reach_the_plan_files(tmp_path):
    token, key = "hf_plaintextTokenThatMustNotLeak", "sk-plaintextKeyThatMustNotLeak"
    config, _ = stack_config("dev")
    config.update({"llm:hfToken": token, "llm:apiKey": key})
    result = run_program("dev", config, ["llm:hfToken", "llm:apiKey"])
    write_plan(result, tmp_path)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert token not in text and key not in text, path


def test_secure_values_in_stack_files_are_masked(tmp_path: Path):
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path)
    (tmp_path / "Pulumi.enc.yaml").write_text("config:\n  llm:hfToken:\n    secure: v1:AAAABBBBCCCC\n")
    config, secret_keys = stack_config("enc", tmp_path)
    assert config["llm:hfToken"] == "[secret]"
    assert secret_keys == ["llm:hfToken"]


def test_report_says_when_prices_come_from_another_region(tmp_path, dev_plan, plan_with):
    report = write_plan(plan_with({"aws:region": "eu-west-1"}), tmp_path)
    assert "costs are us-west-2 list prices; prices in eu-west-1 may differ" in report["warnings"]
    dev_report = write_plan(dev_plan, tmp_path / "dev")
    assert not any("list prices" in warning for warning in dev_report["warnings"])


def test_report_says_where_clients_call_the_model(tmp_path, dev_plan, public_endpoint_plan):
    public = write_plan(public_endpoint_plan, tmp_path / "public")["endpoint"]
    assert public == {
        "url": "https://llm.example.com/v1",
        "load_balancer": {
            "scheme": "internet-facing",
            "tls": True,
            "port": 443,
            "hostname": "llm.example.com",
            "client_ranges": ["203.0.113.0/24"],
        },
    }
    markdown = (tmp_path / "public" / "report.md").read_text()
    assert (
        "Endpoint: https://llm.example.com/v1 through an internet-facing NLB, TLS on 443, admitting 203.0.113.0/24."
        in markdown
    )
    inside = write_plan(dev_plan, tmp_path / "dev")["endpoint"]
    assert inside == {
        "url": "http://keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local:8080/v1",
        "load_balancer": None,
    }


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_written_manifest_of_a_builtin_kind_is_a_valid_object(stack, tmp_path, dev_plan, prod_plan):
    # Custom resources (NodePools, monitors) are checked against their CRDs in tests/conformance; here the
    # Kubernetes kinds, Secrets included: they keep every key and mask only the values.
    plan = dev_plan if stack == "dev" else prod_plan
    write_plan(plan, tmp_path)
    checked = 0
    for path in sorted((tmp_path / "manifests").glob("*.yaml")):
        manifest = yaml.safe_load(path.read_text())
        assert list(manifest)[:3] == ["apiVersion", "kind", "metadata"], path.name
        if "." in manifest["apiVersion"].split("/")[0] and not manifest["apiVersion"].startswith(
            BUILTIN_GROUPS
        ):
            continue
        kubernetes_validate.validate(manifest, f"{plan.config.cluster.version}.0", strict=True)
        if manifest["kind"] == "Secret":
            assert manifest["stringData"] and set(manifest["stringData"].values()) == {"[secret]"}, path.name
        checked += 1
    assert checked >= 8


def test_a_good_plan_ends_with_the_next_three_steps_toward_a_deploy(tmp_path, capsys):
    assert main(["plan", "prod", "--out", str(tmp_path)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-4:]
    assert last[0] == "Next, to deploy it (README.md#deploy-to-aws):"
    assert last[1].startswith("  1. install the Pulumi CLI and the AWS CLI v2")
    assert last[2:] == ["  2. uv run selfhost preview prod", "  3. uv run selfhost up prod"]
    # The commands it names are the command line's own.
    assert {"preview", "up"} <= set(COMMANDS)
