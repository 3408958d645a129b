"""Stands in for `kubectl port-forward [--address A] [--kubeconfig F] -n NS svc/NAME LOCAL:REMOTE`.

It forwards LOCAL to the address in $FAKE_KUBECTL_TARGET (the fake OpenAI server) when NS/NAME equals
$FAKE_KUBECTL_SERVICE, printing what kubectl prints; otherwise it fails as kubectl does for a missing
Service. Its arguments, pid and the kubeconfig it was given go to $FAKE_KUBECTL_RECORD as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError):
        writer.close()


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: tuple[str, int]) -> None:
    """Pass one connection's bytes both ways to and from `target` until either side closes."""
    upstream_reader, upstream_writer = await asyncio.open_connection(*target)
    await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


async def _forward(address: str, local_port: int, remote_port: int, target: tuple[str, int]) -> None:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        print(f"Handling connection for {remote_port}", flush=True)
        await relay(reader, writer, target)

    server = await asyncio.start_server(connection, address, local_port)
    print(f"Forwarding from {address}:{local_port} -> {remote_port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    arguments = sys.argv[1:]
    options: dict[str, str] = {}
    positional: list[str] = []
    words = iter(arguments)
    for word in words:
        if word in ("--address", "--kubeconfig", "-n"):
            options[word] = next(words)
        else:
            positional.append(word)
    kubeconfig = options.get("--kubeconfig")
    record = {
        "argv": arguments,
        "pid": os.getpid(),
        "kubeconfig": Path(kubeconfig).read_text() if kubeconfig else None,
    }
    Path(os.environ["FAKE_KUBECTL_RECORD"]).write_text(json.dumps(record))
    command, service, ports = positional
    namespace = options.get("-n", "default")
    name = service.removeprefix("svc/")
    if command != "port-forward" or f"{namespace}/{name}" != os.environ["FAKE_KUBECTL_SERVICE"]:
        print(f'Error from server (NotFound): services "{name}" not found', file=sys.stderr, flush=True)
        return 1
    local_port, remote_port = (int(port) for port in ports.split(":"))
    host, port = os.environ["FAKE_KUBECTL_TARGET"].rsplit(":", 1)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            _forward(options.get("--address", "127.0.0.1"), local_port, remote_port, (host, int(port)))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
