"""The stack's https endpoint: used directly without kubectl, its certificate verified, failures explained.

A local TLS terminator (fake_load_balancer.py, as the NLB's listener) with a self-signed certificate made
by `openssl` stands in front of the fake OpenAI server; a fake `pulumi` prints the stack's outputs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chat.api import EndpointError, check_health, new_client
from chat.endpoint import Endpoint, open_endpoint
from selfhost.cli import main
from tests.chat.fake_server_process import API_KEY, FakeServer

FAKE_LOAD_BALANCER = Path(__file__).with_name("fake_load_balancer.py")
LOAD_BALANCER = "k8s-llm-vllm-0123456789.elb.us-east-1.amazonaws.com"
CERTIFICATE_HINT = (
    "the certificate in llm:loadBalancerCertificateArn must cover llm:endpointHostname (localhost), and "
    f"localhost must be a CNAME to the stack's load_balancer_hostname output ({LOAD_BALANCER})."
)


def certificate(directory: Path, hostname: str) -> tuple[Path, Path]:
    """A self-signed certificate for `hostname` and its key, as PEM files."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the TLS tests make their certificates with the openssl command: install it")
    cert, key = directory / f"{hostname}.pem", directory / f"{hostname}.key"
    command = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    command += ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={hostname}"]
    command += ["-addext", f"subjectAltName=DNS:{hostname}"]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def stack_behind_tls(
    fake_server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, bool], int]]:
    """Put the fake server behind a TLS terminator whose certificate names `certificate_for`, and make the stack
    `dev` (a fake `pulumi`) point at https://localhost:PORT/v1; `trusted` makes the client trust that
    certificate as it would trust the ACM one (httpx reads SSL_CERT_FILE). Yields a function returning PORT;
    the terminators stop after the test."""
    processes: list[subprocess.Popen[str]] = []

    def start(certificate_for: str, trusted: bool) -> int:
        cert, key = certificate(tmp_path, certificate_for)
        process = subprocess.Popen(
            [sys.executable, str(FAKE_LOAD_BALANCER), str(cert), str(key), str(fake_server.port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        if len(ready) != 2 or ready[0] != "READY":
            pytest.fail("the fake load balancer did not start")
        port = int(ready[1])
        use_stack_outputs(tmp_path, monkeypatch, f"https://localhost:{port}/v1")
        if trusted:
            monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        return port

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def use_stack_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint_url: str) -> None:
    """A fake `pulumi` printing a TLS stack's outputs, alone on PATH: there is no kubectl to call."""
    outputs: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "load_balancer_hostname": LOAD_BALANCER,
        "endpoint_service": "llm/vllm",
        "endpoint_port": 8000,
        "api_key": API_KEY,
        "kubeconfig": {"apiVersion": "v1", "kind": "Config", "clusters": []},
    }
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pulumi = bin_dir / "pulumi"
    pulumi.write_text(f"#!{sys.executable}\nprint({json.dumps(json.dumps(outputs))})\n")
    pulumi.chmod(pulumi.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def stack_args() -> argparse.Namespace:
    return argparse.Namespace(stack="dev", base_url=None, api_key=None)


def test_the_stacks_https_url_is_used_directly_without_kubectl(
    stack_behind_tls: Callable[[str, bool], int], capsys: pytest.CaptureFixture[str]
) -> None:
    port = stack_behind_tls("localhost", True)
    assert shutil.which("kubectl") is None

    with open_endpoint(stack_args()) as endpoint:
        assert (endpoint.base_url, endpoint.api_key, endpoint.tunnel) == (
            f"https://localhost:{port}",
            API_KEY,
            None,
        )

    assert main(["smoke", "dev"]) == 0
    out = capsys.readouterr().out
    assert f"Smoke test of stack dev: https://localhost:{port} over TLS (certificate verified)" in out
    assert "All 3 checks passed." in out


def test_an_untrusted_certificate_is_refused_and_explained(
    fake_server: FakeServer,
    stack_behind_tls: Callable[[str, bool], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = stack_behind_tls("localhost", False)

    assert main(["smoke", "dev"]) == 1

    err = capsys.readouterr().err.strip()
    assert re.fullmatch(
        r"selfhost smoke dev: The TLS certificate localhost presents did not verify \(self.signed certificate\): "
        + re.escape(CERTIFICATE_HINT),
        err,
    ), err
    assert fake_server.completion_requests() == []

    # The requests themselves verify too: httpx refuses the same certificate by default.
    async def get_health() -> None:
        endpoint = fake_server.endpoint()
        async with new_client(endpoint, timeout=5) as client:
            await client.get(f"https://localhost:{port}/health")

    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(get_health())

    # A certificate that goes bad after the endpoint was opened (mid-chat) is said as such, not "nothing answers".
    async def check() -> None:
        endpoint = Endpoint(f"https://localhost:{port}", "key", source="test")
        async with new_client(endpoint, timeout=5) as client:
            await check_health(client, endpoint)

    with pytest.raises(
        EndpointError, match=r"The TLS certificate of https://localhost:\d+ did not verify \(self.signed"
    ):
        asyncio.run(check())


def test_a_certificate_for_another_name_is_explained(
    stack_behind_tls: Callable[[str, bool], int], capsys: pytest.CaptureFixture[str]
) -> None:
    stack_behind_tls("llm.example.com", True)

    assert main(["smoke", "dev"]) == 1

    err = capsys.readouterr().err.strip()
    assert err == (
        "selfhost smoke dev: The TLS certificate localhost presents did not verify (Hostname mismatch, "
        f"certificate is not valid for 'localhost'.): {CERTIFICATE_HINT}"
    )


def test_a_hostname_that_does_not_resolve_asks_for_the_cname(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # .invalid never resolves (RFC 2606).
    use_stack_outputs(tmp_path, monkeypatch, "https://llm.selfhost-test.invalid/v1")

    assert main(["smoke", "dev"]) == 1

    err = capsys.readouterr().err.strip()
    assert re.fullmatch(
        r"selfhost smoke dev: llm\.selfhost-test\.invalid does not resolve \([^)]+\): create a CNAME to the "
        + re.escape(
            f"stack's load_balancer_hostname output ({LOAD_BALANCER}) for it; a new DNS record can take "
            "minutes to be seen."
        ),
        err,
    ), err


def test_through_a_proxy_the_name_is_left_to_the_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_stack_outputs(tmp_path, monkeypatch, "https://llm.selfhost-test.invalid/v1")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")

    with open_endpoint(stack_args()) as endpoint:
        assert endpoint.base_url == "https://llm.selfhost-test.invalid"
