"""The audit log through the SDK's client: one JSON line per tool call, no argument values in it,
a private file, rotation at the size limit, `slicer://audit` and `slicer-mcp audit` reading it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from mcp import Client

from fixtures.core import PROJECT_ROOT
from SlicerMCPLib.core.audit import audit_key_path
from SlicerMCPLib.core.config import load_config
from SlicerMCPLib.core.services import Services
from SlicerMCPLib.serving.server import build_server, result_bytes

PATIENT = "DOE^JOHNATHAN"  # a patient name a client might send as an argument
FIELDS = ["time", "client", "session", "tool", "arguments_hmac", "result", "duration_ms", "bytes"]


def _server(backend: Any, audit: dict[str, Any]) -> Any:
    config = load_config(env={}, overrides={"audit": audit})
    return build_server(Services(config=config, backend=backend))


def _expected_digest(arguments: dict[str, Any]) -> str:
    """What the line must hold: HMAC-SHA256 of the canonical JSON under this install's key."""
    key = audit_key_path().read_text(encoding="utf-8").strip().encode("ascii")
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


CALLS: list[tuple[str, dict[str, Any]]] = [
    ("list_scene_nodes", {"name": PATIENT, "limit": 5}),
    ("list_scene_nodes", {"limit": 5, "name": PATIENT}),  # same arguments in another order
    ("get_node", {"node_id": f"vtkMRMLScalarVolumeNode{PATIENT}"}),
    (f"find_{PATIENT}", {"patient": PATIENT}),  # no such tool: its made-up name is not written either
]


def test_each_call_is_one_line_without_argument_values(tmp_path: Path, clean_backend: Any) -> None:
    path = tmp_path / "audit-folder" / "calls.jsonl"
    server = _server(clean_backend, {"path": str(path)})

    async def main() -> tuple[list[Any], str]:
        async with Client(server) as client:
            results = [await client.call_tool(name, args) for name, args in CALLS]
            resource = (await client.read_resource("slicer://audit")).contents[0].text
        return results, resource

    results, resource = asyncio.run(main())
    entries = _lines(path)
    assert [list(e) for e in entries] == [FIELDS] * 4
    assert [e["tool"] for e in entries] == [
        "list_scene_nodes",
        "list_scene_nodes",
        "get_node",
        "(unknown tool)",
    ]
    assert [e["result"] for e in entries] == ["OK", "OK", "INVALID_NODE_ID", "UNKNOWN_TOOL"]
    assert [e["arguments_hmac"] for e in entries] == [_expected_digest(args) for _, args in CALLS]
    assert entries[0]["arguments_hmac"] == entries[1]["arguments_hmac"]
    # without the key, hashing a guessed patient name's arguments finds nothing in the log
    unkeyed = json.dumps(CALLS[0][1], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(unkeyed.encode("utf-8")).hexdigest() not in path.read_text()
    assert stat.S_IMODE(audit_key_path().stat().st_mode) == 0o600
    assert {e["client"] for e in entries} == {"mcp/0.1.0"}  # the SDK client's declared name/version
    for entry, result in zip(entries, results, strict=True):
        assert entry["bytes"] == result_bytes(result)  # as the client received it
        assert entry["duration_ms"] >= 0 and entry["time"].endswith("+00:00")
    # no argument value, and not the result text either, reaches the file or the resource
    text = path.read_text()
    assert PATIENT not in text and "JOHNATHAN" not in text and "DOE" not in text
    assert PATIENT not in resource
    assert json.loads(resource) == {"enabled": True, "path": str(path), "entries": entries}
    # user-only: the file 0600, its folder 0700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_rotates_at_the_size_limit_and_reads_across_files(tmp_path: Path, clean_backend: Any) -> None:
    path = tmp_path / "audit" / "calls.jsonl"
    limit = 10_000
    server = _server(clean_backend, {"path": str(path), "max_bytes": limit, "backups": 2, "recent_lines": 60})

    async def main() -> dict[str, Any]:
        async with Client(server) as client:
            for i in range(150):  # ~250 bytes a line: several rotations
                await client.call_tool("list_scene_nodes", {"offset": i})
            return json.loads((await client.read_resource("slicer://audit")).contents[0].text)

    tail = asyncio.run(main())
    files = sorted(path.parent.iterdir())
    assert [f.name for f in files] == ["calls.jsonl", "calls.jsonl.1", "calls.jsonl.2"]  # the oldest dropped
    for f in files:
        assert f.stat().st_size <= limit and stat.S_IMODE(f.stat().st_mode) == 0o600
    kept = _lines(path.parent / "calls.jsonl.2") + _lines(path.parent / "calls.jsonl.1") + _lines(path)
    offsets = [_offset_of(e) for e in kept]
    assert offsets == list(range(150 - len(kept), 150))  # in order, nothing lost inside the kept files
    assert len(tail["entries"]) == 60 and tail["entries"] == kept[-60:]  # read across the rotated files
    assert len(_lines(path)) < 60  # so the resource did need the rotated copy


def _offset_of(entry: dict[str, Any]) -> int:
    for i in range(150):
        if entry["arguments_hmac"] == _expected_digest({"offset": i}):
            return i
    raise AssertionError(f"unknown digest {entry['arguments_hmac']}")


def test_cli_prints_the_newest_lines(tmp_path: Path, clean_backend: Any) -> None:
    path = tmp_path / "a" / "calls.jsonl"
    server = _server(clean_backend, {"path": str(path)})

    async def main() -> None:
        async with Client(server) as client:
            for name, args in CALLS:
                await client.call_tool(name, args)

    asyncio.run(main())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"audit": {"path": str(path)}}))
    done = subprocess.run(
        [sys.executable, "-m", "slicer_mcp", "--config", str(config), "audit", "-n", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert printed == _lines(path)[-3:]


def test_disabled_writes_nothing(tmp_path: Path, clean_backend: Any) -> None:
    path = tmp_path / "off" / "calls.jsonl"
    server = _server(clean_backend, {"path": str(path), "enabled": False})

    async def main() -> None:
        async with Client(server) as client:
            await client.call_tool("list_scene_nodes", {"name": PATIENT})

    asyncio.run(main())
    assert not path.exists()


def test_calls_over_http_are_audited_with_the_client(tmp_path: Path, clean_backend: Any) -> None:
    """The SDK's streamable HTTP client, as Claude Code connects: lines name the client, never the token."""
    from fixtures.transport import http_client
    from SlicerMCPLib.core.config import ServerSettings
    from SlicerMCPLib.serving.auth import load_or_create_token, token_path
    from SlicerMCPLib.serving.http_transport import mcp_http_server

    path = tmp_path / "http" / "calls.jsonl"
    settings = ServerSettings(port=0)
    token = load_or_create_token(token_path(settings))
    http = mcp_http_server(_server(clean_backend, {"path": str(path)}), settings, token).start()
    try:

        async def main() -> None:
            async with http_client(http.url, token) as client:  # the 2026 protocol: no session
                await client.call_tool("list_scene_nodes", {"name": PATIENT})
            for _ in range(2):  # two handshake sessions, one call each
                legacy = http_client(http.url, token)
                legacy.mode = "legacy"
                async with legacy:
                    await legacy.call_tool("list_scene_nodes", {"name": PATIENT})

        asyncio.run(main())
    finally:
        http.stop()
    entries = _lines(path)
    assert [(e["tool"], e["result"], e["client"]) for e in entries] == [
        ("list_scene_nodes", "OK", "mcp/0.1.0")
    ] * 3
    sessions = [e["session"] for e in entries]
    assert sessions[0] is None and len(set(sessions[1:])) == 2  # a digest per session, not the id
    assert all(len(s) == 12 and int(s, 16) >= 0 for s in sessions[1:])
    assert token not in path.read_text() and PATIENT not in path.read_text()


def test_result_size_counts_image_data_without_dumping_it_again() -> None:
    """result_bytes skips re-dumping base64 blobs but must still give the size the full JSON has."""
    from mcp.types import CallToolResult, ImageContent, TextContent

    image = ImageContent(type="image", data="iVBORw0KGgo" * 5000, mime_type="image/png")
    text = TextContent(type="text", text='{"note": "é\\n\\"quoted\\""}')
    result = CallToolResult(content=[text, image], structured_content={"notes": ["ü", 'a"b']})
    full = result.model_dump_json(by_alias=True, exclude_none=True, exclude={"meta", "result_type"})
    assert result_bytes(result) == len(full.encode("utf-8"))
    assert result.content[1].data.startswith("iVBOR")  # the result itself is left as it was
