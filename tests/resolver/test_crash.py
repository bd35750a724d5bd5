"""A node killed with SIGKILL in the middle of a large batch loses no
operation whose result line it had already sent."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from registry.sqlite_store import SqliteStore
from resolver.rest_client import basic_auth_header
from scripts.node_process import NodeProcess, run_cli

LINES = 60_000
SECRET = "crash-test-secret"


def batch_lines(start: int = 0, stop: int = LINES, per_chunk: int = 500):
    async def chunks():
        for first in range(start, stop, per_chunk):
            yield b"".join(
                orjson.dumps({"handle": f"88.118.2/K-{i:06}", "values": [{"index": 1, "type": "URL", "data": f"https://e/{i}"}]}) + b"\n"
                for i in range(first, min(stop, first + per_chunk))
            )

    return chunks()


async def send_batch(url: str, on_result) -> None:
    headers = {"Authorization": basic_auth_header("300:0.NA/88.118.2", SECRET), "Content-Type": "application/x-ndjson"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/api/batch", data=batch_lines(), headers=headers) as reply:
            assert reply.status == 200
            async for raw in reply.content:
                on_result(orjson.loads(raw))


@pytest.mark.parametrize("kill_after", [7_000, 19_000, 33_000])
async def test_sigkill_mid_batch_loses_nothing_acknowledged(tmp_path, kill_after):
    assert run_cli("init", "--data", str(tmp_path), "--prefix", "88.118.2", "--secret", SECRET).returncode == 0
    node = NodeProcess(tmp_path).start()
    acknowledged: list[str] = []

    def on_result(result):
        assert result["responseCode"] == 1, result
        acknowledged.append(result["handle"])
        if len(acknowledged) == kill_after:
            node.kill()

    with pytest.raises((aiohttp.ClientError, ConnectionError)):
        await send_batch(node.url, on_result)
    assert node.process.returncode == -9
    assert kill_after <= len(acknowledged) < LINES

    async with SqliteStore(tmp_path / "idnode.sqlite3") as store:
        for handle in acknowledged:
            assert await store.get(handle) is not None, f"{handle} was acknowledged but is gone"
        journal = await store.journal(limit=LINES + 10)
        assert [e.seq for e in journal] == list(range(1, len(journal) + 1))  # no gaps
        created = [e.handle for e in journal if e.op == "create" and e.handle.startswith("88.118.2/K-")]
        assert len(created) == len(set(created))  # no duplicates
        assert set(acknowledged) <= set(created)
        assert await store.count_handles("88.118.2") == len(created)

    # The same batch sent again completes: done lines answer "unchanged".
    statuses: dict[str, int] = {}

    def count(result):
        assert result["responseCode"] == 1, result
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1

    with NodeProcess(tmp_path) as restarted:
        await send_batch(restarted.url, count)
    assert statuses["unchanged"] == len(created)
    assert statuses["unchanged"] + statuses.get("created", 0) == LINES
