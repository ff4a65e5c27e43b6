"""Exactness across real worker processes: ``ret serve --workers 4`` sharing one SQLite store.

The client opens every connection first, then sends all requests at once and reads all answers, so
the 4 workers really decide concurrently. Identities are client addresses: 127.0.0.1 for the
single-client case, sockets bound to 127.0.0.2-5 for four clients, and a forwarded address behind
127.0.0.1 as the one trusted proxy.

The policy is 100 per hour, not per minute: GCRA gives a unit back every period/limit (0.6 s for
100/minute), and on a shared 2-core machine 400 requests through 4 workers can take longer than
that, which would make "exactly 100" depend on timing rather than on the limiter. At 100/hour a
unit returns after 36 s, so any count other than 100 is the limiter's error.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import running_server, server_environment

pytestmark = pytest.mark.slow

LIMIT = 100
POLICY = f"{LIMIT}/hour"
TRUSTED_PROXY = "127.0.0.1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = server_environment(
        Path(tmp_path_factory.mktemp("ratelimit")),
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_DEFAULT=POLICY,
        RATE_LIMIT_EXEMPT_PATHS='["/api/ready"]',  # the start-up poll must not spend the quota
        RET_TRUSTED_PROXIES=TRUSTED_PROXY,
    )
    with running_server(env, workers=4) as base_url:
        yield base_url


async def _request(port: int, source: str, headers: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    return await _exchange(reader, writer, headers)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: str) -> int:
    writer.write(f"GET /api/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    return int(response.split(b" ", 2)[1])


async def _burst(port: int, clients: list[tuple[str, str]]) -> list[int]:
    """Connect every (source address, extra headers) client, then send all requests at once."""
    connections = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)) for source, _ in clients)
    )
    exchanges = [
        _exchange(reader, writer, headers)
        for (reader, writer), (_, headers) in zip(connections, clients, strict=True)
    ]
    return list(await asyncio.gather(*exchanges))


def burst(base_url: str, clients: list[tuple[str, str]]) -> list[int]:
    return asyncio.run(_burst(int(base_url.rsplit(":", 1)[1]), clients))


def test_one_client_gets_exactly_the_limit_from_four_workers(server: str) -> None:
    statuses = Counter(burst(server, [("127.0.0.1", "")] * 400))
    assert statuses == {200: LIMIT, 429: 300}


def test_four_clients_in_parallel_get_exactly_the_limit_each(server: str) -> None:
    sources = [f"127.0.0.{n}" for n in range(2, 6)]
    clients = [(source, "") for source in sources] * 160
    statuses = burst(server, clients)
    admitted = Counter(source for (source, _), status in zip(clients, statuses, strict=True) if status == 200)
    assert admitted == dict.fromkeys(sources, LIMIT)
    assert Counter(statuses) == {200: 4 * LIMIT, 429: 4 * 60}


def test_behind_the_trusted_proxy_the_forwarded_client_is_the_identity(server: str) -> None:
    # Through the proxy (127.0.0.1): the right-most untrusted hop counts, whatever the client prepends.
    proxied = [("127.0.0.1", f"X-Forwarded-For: 10.{n % 250}.0.1, 203.0.113.5\r\n") for n in range(150)]
    # Straight from an untrusted peer: its forwarded headers are ignored.
    spoofing = [("127.0.0.6", f"X-Forwarded-For: 198.51.100.{n % 250}\r\n") for n in range(150)]
    statuses = burst(server, proxied + spoofing)
    assert Counter(statuses[:150]) == {200: LIMIT, 429: 50}
    assert Counter(statuses[150:]) == {200: LIMIT, 429: 50}
