"""What the benchmarks share: `slicer-mcp` started as a user starts it, and a real client for it.

`SlicerMcpProcess` runs `.venv/bin/slicer-mcp serve --headless --transport http --port 0` in its
own process with its own SLICER_MCP_HOME, reads the URL the command prints on stderr and the
bearer token from the token file, as a user would. `Connection` is the MCP Python SDK's
streamable HTTP client on one httpx2 connection pool (kept alive between calls), plus a raw
JSON-RPC POST on the same pool: the bare HTTP round trip of the same server (`server/discover`,
the 2026 protocol's ping).
"""

from __future__ import annotations

import ast
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parents[1]
SLICER_MCP = ROOT / ".venv" / "bin" / "slicer-mcp"
_URL_LINE = re.compile(r"serving MCP at (\S+)")


class SlicerMcpProcess:
    """`slicer-mcp serve --headless --transport http --port 0` in a subprocess."""

    def __init__(self, *args: str, allow_python: bool = True, env: dict[str, str] | None = None):
        self.home = Path(tempfile.mkdtemp(prefix="bench-slicer-mcp-"))
        self.args = ["serve", "--headless", "--transport", "http", "--port", "0", *args]
        self.env = {**os.environ, "SLICER_MCP_HOME": str(self.home), **(env or {})}
        self.env.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
        if allow_python:
            self.env["SLICER_MCP_ALLOW_EXECUTE_PYTHON"] = "true"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.token = ""
        self.log: list[str] = []

    def __enter__(self) -> SlicerMcpProcess:
        self.proc = subprocess.Popen(
            [str(SLICER_MCP), *self.args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 120
        for line in self.proc.stderr:
            self.log.append(line)
            found = _URL_LINE.search(line)
            if found:
                self.url = found.group(1)
                break
            if time.monotonic() > deadline:
                break
        if not self.url:
            self.__exit__()
            raise RuntimeError("slicer-mcp did not start:\n" + "".join(self.log[-20:]))
        # keep draining stderr, or a chatty server would block on a full pipe
        threading.Thread(target=self._drain, daemon=True).start()
        self.token = (self.home / "token").read_text(encoding="utf-8").strip()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def __exit__(self, *_: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Connection:
    """An SDK client and raw JSON-RPC POSTs sharing one kept-alive httpx2 connection."""

    def __init__(self, url: str, token: str, *, validate: bool = True):
        self.url = url
        self.token = token
        self.sent_headers: dict[str, str] = {}
        self.meta: dict[str, Any] = {}  # the protocol envelope of the SDK's requests (2026 protocol)

        async def remember(request: httpx2.Request) -> None:  # the MCP headers the SDK sends
            for key, value in request.headers.items():
                if key.startswith("mcp-"):
                    self.sent_headers[key] = value
            if request.method == "POST" and not self.meta:
                sent = json.loads(request.content or b"{}")
                self.meta = (sent.get("params") or {}).get("_meta") or {}

        self.http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            timeout=120.0,
            event_hooks={"request": [remember]},
            limits=httpx2.Limits(max_connections=1),
        )
        self.client = Client(streamable_http_client(url, http_client=self.http), read_timeout_seconds=120)
        self.validate = validate
        self.namespace: str | None = None  # the server-issued execute_python namespace (2026: no session)
        self._next_id = 10_000

    async def __aenter__(self) -> Connection:
        await self.client.__aenter__()
        if not self.validate:

            async def skip(name: str, result: object) -> None:
                return None

            self.client.session.validate_tool_result = skip  # type: ignore[method-assign]
        await self.client.list_tools()  # the client caches output schemas from the listing
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(*exc)
        await self.http.aclose()

    async def call(self, tool: str, args: dict[str, Any] | None = None) -> Any:
        result = await self.client.call_tool(tool, args or {})
        if result.is_error:
            raise RuntimeError(f"{tool} failed: {result.content}")
        return result

    async def python(self, code: str) -> Any:
        """Run code in the server (execute_python); returns the value of its last expression."""
        args = {"code": code, **({"namespace": self.namespace} if self.namespace else {})}
        result = await self.call("execute_python", args)
        out = result.structured_content
        self.namespace = out.get("namespace") or self.namespace  # names persist only when passed back
        if not out["success"]:
            raise RuntimeError(out.get("traceback") or out.get("error"))
        return json.loads(ast.literal_eval(out["result"])) if out.get("result") else None

    async def raw(
        self,
        method: str = "server/discover",
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One JSON-RPC request as a bare HTTP POST on the same connection pool (`timeout` s: the
        client gives up and drops the connection, as a client that goes away mid-call does)."""
        self._next_id += 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        body["params"] = {**(params or {}), **({"_meta": self.meta} if self.meta else {})}
        response = await self.http.post(
            self.url,
            content=json.dumps(body).encode(),
            headers={
                **{k: v for k, v in self.sent_headers.items() if k not in ("mcp-name", "mcp-method")},
                **({"mcp-name": params["name"]} if params and "name" in params else {}),
                "mcp-method": method,
                "content-type": "application/json",
                "accept": "application/json, text/event-stream",
            },
            **({"timeout": timeout} if timeout is not None else {}),
        )
        if response.status_code >= 400:
            raise RuntimeError(
                f"{method}: HTTP {response.status_code} {response.text[:300]} (sent {self.sent_headers})"
            )
        return (
            response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        )


async def timed(fn: Callable[[], Awaitable[Any]], n: int, warmup: int = 2) -> list[float]:
    """Milliseconds of `n` awaited calls after `warmup` untimed ones."""
    for _ in range(warmup):
        await fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def interleaved(
    fns: dict[str, Callable[[], Awaitable[Any]]], n: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Like `timed` for several calls, alternated call by call so machine load hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            await fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(n):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            await fn()
            out[key].append((time.perf_counter() - t0) * 1000)
    return out


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def row(label: str, values: list[float], ref: float | None = None, target: float | None = None) -> str:
    """One printed line: p50, p99, and the p50 ratio to `ref` against `target`."""
    text = f"  {label:<58} p50 {p50(values):8.2f} ms  p99 {p99(values):8.2f} ms"
    if ref:
        ratio = p50(values) / ref
        text += f"  {ratio:6.2f}x"
        if target is not None:
            text += f"  (target <= {target:g}x: {'met' if ratio <= target else 'MISSED'})"
    return text


def in_server_timer(body: str, n: int, setup: str = "", warmup: int = 2) -> str:
    """execute_python code that times `body` n times on the scene thread (after `warmup` untimed
    runs) and returns the ms list as JSON."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return (
        f"import json as _j, time as _t\n{setup}\n_ms = []\n"
        f"for _i in range({n} + {warmup}):\n    _t0 = _t.perf_counter()\n{indented}\n"
        "    _ms.append((_t.perf_counter() - _t0) * 1000)\n"
        f"_j.dumps(_ms[{warmup}:])"
    )


if __name__ == "__main__":  # smoke check: start, call, stop
    import asyncio

    async def main() -> None:
        with SlicerMcpProcess("--demo") as server:
            async with Connection(server.url, server.token) as conn:
                print(await conn.raw(), file=sys.stderr)
                print((await conn.call("list_dicom_nodes")).structured_content, file=sys.stderr)

    asyncio.run(main())
