"""Stands in for the stack's NLB TLS listener: terminates TLS and passes the bytes on to a plain-HTTP server.

Run: `python fake_load_balancer.py CERT KEY TARGET_PORT`; it listens on a free port of 127.0.0.1 with the
certificate CERT (PEM) and its key KEY, forwards each connection to 127.0.0.1:TARGET_PORT (the fake
OpenAI server), and prints `READY <port>` once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys

# Run as a script, this file's folder is on sys.path: the relay is the fake kubectl's own.
from fake_kubectl import relay


async def _serve(certificate: str, key: str, target_port: int) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await relay(reader, writer, ("127.0.0.1", target_port))

    server = await asyncio.start_server(connection, "127.0.0.1", 0, ssl=context)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    certificate, key, target_port = sys.argv[1:]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(certificate, key, int(target_port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
