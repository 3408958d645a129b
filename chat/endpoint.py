"""Where the endpoint is: a stack's outputs (its https URL, or a `kubectl port-forward`), or `--base-url`.

A stack with a TLS load balancer (llm:loadBalancerCertificateArn and llm:endpointHostname) exports
`endpoint_url` as `https://<hostname>/v1`: clients use it directly, with the certificate verified, and
need neither kubectl nor a kubeconfig. Otherwise `endpoint_url` is the in-cluster URL, and from a laptop
the way in is a port-forward to the vLLM Service (or `--base-url` with a load balancer's address): the
stack exports `endpoint_service` ("<namespace>/<service>"), `endpoint_port` and the secret `api_key`;
when it also exports `kubeconfig`, that one is used so the user needs no `aws eks update-kubeconfig` first.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

DEFAULT_STACK = "dev"
VLLM_PORT = 8000
PULUMI_TIMEOUT_SECONDS = 120
PORT_FORWARD_READY_SECONDS = 30
TLS_CHECK_SECONDS = 10.0
PROJECT_DIR = Path(__file__).resolve().parent.parent


class EndpointSetupError(Exception):
    """The endpoint cannot be reached for a reason the user must fix; the message says which."""


class MissingPrerequisite(EndpointSetupError):
    """Something needed before anything can run: a tool (`tool` names it) or a deployed stack."""

    def __init__(self, message: str, tool: str | None = None, needed_for: str = "") -> None:
        super().__init__(message)
        self.tool = tool
        self.needed_for = needed_for


class StackOutputsUnread(EndpointSetupError):
    """The Pulumi CLI could not read the stack's outputs; `output` is what it printed, whose cause (no login,
    no passphrase, no such stack) the command line turns into what to do."""

    def __init__(self, message: str, stack: str, output: str) -> None:
        super().__init__(message)
        self.stack = stack
        self.output = output


# What to do instead of installing the tools the stack's endpoint needs.
USE_BASE_URL = "pass --base-url and --api-key"


@dataclass(frozen=True)
class ServiceTarget:
    namespace: str
    service: str
    port: int


class PortForward:
    """`kubectl port-forward` to a Service on a fixed local port, restartable when the tunnel drops.

    A port-forward to `svc/NAME` is bound to the one pod kubectl picked: when that pod restarts the
    tunnel dies, so long-lived users (the chat app) call `ensure_running()` before each request.
    """

    def __init__(self, kubectl: str, target: ServiceTarget, kubeconfig: Path | None) -> None:
        self.target = target
        self.local_port = _free_local_port()
        self._command = [kubectl, "port-forward", "--address", "127.0.0.1"]
        if kubeconfig is not None:
            self._command += ["--kubeconfig", str(kubeconfig)]
        self._command += ["-n", target.namespace, f"svc/{target.service}", f"{self.local_port}:{target.port}"]
        self._process: subprocess.Popen[str] | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=5)
        self._ready = threading.Event()
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def start(self) -> None:
        self._ready.clear()
        self._stderr_tail.clear()
        process = subprocess.Popen(
            self._command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._process = process
        assert process.stdout is not None and process.stderr is not None
        # kubectl logs a line per connection ("Handling connection for 8000"): the pipes are drained
        # for the tunnel's whole life, or a long chat or a benchmark would fill them and stall kubectl.
        threading.Thread(target=self._read_stdout, args=(process.stdout,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(process.stderr,), daemon=True).start()
        waited = 0.0
        while not self._ready.wait(0.1):
            waited += 0.1
            if process.poll() is not None or waited >= PORT_FORWARD_READY_SECONDS:
                self.stop()
                raise EndpointSetupError(
                    f"kubectl port-forward to svc/{self.target.service} in namespace "
                    f"{self.target.namespace} failed: {self.last_error() or 'it did not start listening'}"
                )

    def ensure_running(self) -> None:
        with self._lock:
            if self._process is not None and self._process.poll() is not None:
                self.start()

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def last_error(self) -> str:
        return self._stderr_tail[-1] if self._stderr_tail else ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            # kubectl prints "Forwarding from 127.0.0.1:PORT -> 8000" once it listens.
            if line.startswith("Forwarding from"):
                self._ready.set()

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            if line.strip():
                self._stderr_tail.append(line.strip())


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server: root URL (no `/v1`), API key (None: send none) and where it came from."""

    base_url: str
    api_key: str | None
    source: str
    tunnel: PortForward | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


def normalize_base_url(url: str) -> str:
    """Accept both the server root and the OpenAI-style `.../v1` base URL; `/health` lives at the root."""
    url = url.strip().rstrip("/")
    return url.removesuffix("/v1")


def add_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "stack",
        nargs="?",
        default=DEFAULT_STACK,
        help=f"stack whose endpoint to use (default: {DEFAULT_STACK})",
    )
    parser.add_argument(
        "--base-url",
        help="OpenAI-compatible server to use instead of the stack's, e.g. http://localhost:8000 "
        "(a trailing /v1 is accepted)",
    )
    parser.add_argument(
        "--api-key",
        help="API key (default: the stack's api_key output, or $OPENAI_API_KEY with --base-url)",
    )


@contextmanager
def open_endpoint(args: argparse.Namespace) -> Iterator[Endpoint]:
    """Yield the endpoint the arguments name; a port-forward it opened is closed on exit."""
    if args.base_url:
        api_key = args.api_key or os.environ.get("OPENAI_API_KEY") or None
        yield Endpoint(normalize_base_url(args.base_url), api_key, source=normalize_base_url(args.base_url))
        return
    outputs = read_stack_outputs(args.stack)
    api_key = args.api_key or _optional_string(outputs, "api_key")
    endpoint_url = _optional_string(outputs, "endpoint_url")
    if endpoint_url is not None and endpoint_url.startswith("https://"):
        base_url = normalize_base_url(endpoint_url)
        check_tls_endpoint(base_url, _optional_string(outputs, "load_balancer_hostname"))
        yield Endpoint(
            base_url, api_key, source=f"stack {args.stack}: {base_url} over TLS (certificate verified)"
        )
        return
    target = service_target(outputs, args.stack)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise MissingPrerequisite(
            "kubectl is not on PATH", tool="kubectl", needed_for="to reach the stack's in-cluster endpoint"
        )
    with ExitStack() as cleanup:
        kubeconfig = None
        if "kubeconfig" in outputs:
            kubeconfig = cleanup.enter_context(_kubeconfig_file(outputs["kubeconfig"]))
        tunnel = PortForward(kubectl, target, kubeconfig)
        cleanup.callback(tunnel.stop)
        tunnel.start()
        yield Endpoint(
            tunnel.base_url,
            api_key,
            source=f"stack {args.stack}: svc/{target.service} in namespace {target.namespace} "
            f"through kubectl port-forward on {tunnel.base_url}",
            tunnel=tunnel,
        )


def check_tls_endpoint(base_url: str, load_balancer: str | None) -> None:
    """Resolve the stack's https endpoint and verify its certificate as the clients will (httpx's trust
    store), so that a missing CNAME or a certificate for another name is said plainly, once, rather than
    as "nothing answers". Anything else (a port that does not answer in time) is left to the requests."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if {"https", "all"} & urllib.request.getproxies().keys():
        return  # Through a proxy, the name resolves at the proxy, not here.
    cname = "a CNAME to the stack's load_balancer_hostname output" + (
        f" ({load_balancer})" if load_balancer else ""
    )
    try:
        with (
            socket.create_connection((host, parts.port or 443), timeout=TLS_CHECK_SECONDS) as connection,
            httpx.create_ssl_context().wrap_socket(connection, server_hostname=host),
        ):
            pass
    except socket.gaierror as error:
        raise EndpointSetupError(
            f"{host} does not resolve ({error.strerror}): create {cname} for it; a new DNS record can take "
            "minutes to be seen."
        ) from None
    except ssl.SSLCertVerificationError as error:
        raise EndpointSetupError(
            f"The TLS certificate {host} presents did not verify ({error.verify_message}): the certificate in "
            f"llm:loadBalancerCertificateArn must cover llm:endpointHostname ({host}), and {host} must be {cname}."
        ) from None
    except OSError:
        return


def read_stack_outputs(stack: str) -> dict[str, Any]:
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise MissingPrerequisite(
            "the Pulumi CLI is not on PATH", tool="pulumi", needed_for="to read the stack's outputs"
        )
    # `pulumi stack output` resolves a short stack name against the project in its working directory.
    cwd = PROJECT_DIR if (PROJECT_DIR / "Pulumi.yaml").is_file() else None
    try:
        result = subprocess.run(
            [pulumi, "stack", "output", "--json", "--show-secrets", "--stack", stack],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=PULUMI_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise EndpointSetupError(
            f"Pulumi took more than {PULUMI_TIMEOUT_SECONDS} s to read the outputs of stack {stack!r}"
        ) from None
    if result.returncode != 0:
        reason = _last_line(result.stderr) or f"exit code {result.returncode}"
        raise StackOutputsUnread(
            f"Pulumi could not read the outputs of stack {stack!r}: {reason}", stack, result.stderr
        )
    try:
        outputs = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise EndpointSetupError(f"Pulumi printed no JSON for the outputs of stack {stack!r}") from None
    if not isinstance(outputs, dict):
        raise EndpointSetupError(f"Pulumi printed no JSON object for the outputs of stack {stack!r}")
    return outputs


def service_target(outputs: Mapping[str, Any], stack: str) -> ServiceTarget:
    service = outputs.get("endpoint_service")
    if not isinstance(service, str) or service.count("/") != 1 or "" in service.split("/"):
        raise MissingPrerequisite(
            f"stack {stack} has no endpoint yet (no endpoint_service output): deploy it with `selfhost up {stack}`, "
            f"or {USE_BASE_URL}."
        )
    namespace, name = service.split("/")
    port = outputs.get("endpoint_port", VLLM_PORT)
    try:
        port_number = int(port)
    except (TypeError, ValueError):
        raise EndpointSetupError(
            f"Stack {stack!r} has an endpoint_port output that is no port: {port!r}"
        ) from None
    return ServiceTarget(namespace, name, port_number)


@contextmanager
def _kubeconfig_file(kubeconfig: object) -> Iterator[Path]:
    text = kubeconfig if isinstance(kubeconfig, str) else json.dumps(kubeconfig)
    # The kubeconfig names the cluster's endpoint and CA: readable by the user only, removed on exit.
    with tempfile.TemporaryDirectory(prefix="selfhost-") as directory:
        path = Path(directory) / "kubeconfig"
        path.touch(mode=0o600)
        path.write_text(text)
        yield path


def _optional_string(outputs: Mapping[str, Any], name: str) -> str | None:
    value = outputs.get(name)
    return value if isinstance(value, str) and value else None


def _free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
