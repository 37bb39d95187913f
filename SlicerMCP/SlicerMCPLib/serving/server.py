"""The MCP server factory: one tool catalog, whatever the backend and transport.

`build_server(services)` returns an `MCPServer` whose lifespan context is `services`.
Tool failures become MCP tool errors whose text is the JSON error body of DESIGN
("Errors"); every call passes `SlicerMCPServer.call_tool`, which records it once: in the call log
(the panel's table) and in the audit log (client, tool, argument digest, result code, duration,
bytes; never arguments or results).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp_types import CallToolResult, Resource, TextContent
from pydantic import ValidationError

from .. import __version__
from ..core.audit import audit_of
from ..core.errors import ErrorCode, SlicerMCPError
from ..core.services import CallRecord, Services
from ..tools.sdk_internals import request_connection
from .output_schema import compact_schema
from .subscriptions import LiveResources

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
SlicerMCP connects you to a 3D Slicer scene (or a headless one). Start with list_scene_nodes
or the slicer://scene resource, look with capture_screenshot, measure with measure_volume.
DICOM, FHIR and RIS tools query servers from the config and load studies into the scene.
Errors come back as JSON {"error": {"code", "message", "details"}}: read the message, it says
what to do next. execute_python and writes to PACS/FHIR/RIS are off unless the config allows them.
"""


def error_result(
    code: ErrorCode | str, message: str, details: dict[str, Any] | None = None
) -> CallToolResult:
    err = SlicerMCPError(message, code=ErrorCode(code), details=details)
    return CallToolResult(content=[TextContent(type="text", text=err.to_json())], is_error=True)


def _validation_message(exc: ValidationError) -> tuple[str, list[str]]:
    problems = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "arguments"
        problems.append(f"{loc}: {e['msg']}")
    return "invalid arguments: " + "; ".join(problems), problems


def _validation_error(exc: ValidationError) -> CallToolResult:
    """INVALID_PARAMETER naming each problem; INVALID_NODE_ID when only node ids are wrong (an object,
    a number, an empty or 10 KB string where an id goes), as for an id the scene does not have."""
    message, problems = _validation_message(exc)
    errors = exc.errors()
    if errors and all(
        e["loc"] and str(e["loc"][0]).endswith("node_id") and e["type"] != "missing" for e in errors
    ):
        wrong = {str(e["loc"][0]) for e in errors}
        return error_result(
            ErrorCode.INVALID_NODE_ID,
            f"{', '.join(sorted(wrong))} is not a node id (a short string such as "
            "vtkMRMLScalarVolumeNode1); call list_scene_nodes to see the node ids",
            {"problems": problems},
        )
    return error_result(ErrorCode.INVALID_PARAMETER, message, {"problems": problems})


class SlicerMCPServer(MCPServer[Services]):
    """MCPServer with the project's error model and call log."""

    def __init__(self, services: Services, **kwargs: Any):
        self.services = services
        self.bus = kwargs.pop("subscriptions", None) or InMemorySubscriptionBus()
        self.live: LiveResources | None = None  # set by build_server
        self.audit = audit_of(services)  # one per Services, however many servers share them

        @asynccontextmanager
        async def lifespan(_: MCPServer[Services]) -> AsyncIterator[Services]:
            yield services  # handed over only: the host that entered the services closes them

        super().__init__(
            name="slicer-mcp",
            title="3D Slicer",
            instructions=INSTRUCTIONS,
            version=__version__,
            lifespan=lifespan,
            subscriptions=self.bus,
            **kwargs,
        )

    async def list_resources(self) -> list[Resource]:
        """The fixed resources, then one per scene node (see serving/subscriptions.py)."""
        nodes = self.live.node_resources() if self.live is not None else []
        return await super().list_resources() + nodes

    def compact_output_schemas(self) -> None:
        """Publish every tool's output schema flat (see output_schema.py): clients check results faster."""
        for tool in self._tool_manager.list_tools():
            if tool.fn_metadata.output_schema is not None:
                tool.fn_metadata.output_schema = compact_schema(tool.fn_metadata.output_schema)

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None) -> Any:
        started = time.time()
        t0 = time.perf_counter()
        record = CallRecord(started, name, 0.0, ok=False, arguments_hmac=self.audit.digest(arguments))
        record.client, record.session = _caller(context)
        try:
            result = await self._call_tool(name, arguments, context)
        except BaseException as exc:  # MCPError passed through, or the call cancelled: recorded too
            record.error_code = (
                "CANCELLED" if isinstance(exc, anyio.get_cancelled_exc_class()) else "MCP_ERROR"
            )
            self._record(record, t0)
            raise
        is_error = isinstance(result, CallToolResult) and result.is_error
        record.ok, record.error_code = not is_error, _code_of(result) if is_error else None
        record.result_bytes = result_bytes(result)
        if record.error_code == ErrorCode.UNKNOWN_TOOL:
            record.tool = "(unknown tool)"  # a name the client made up is not written anywhere
        self._record(record, t0)
        return result

    def _record(self, record: CallRecord, t0: float) -> None:
        record.duration_s = time.perf_counter() - t0
        self.services.call_log.add(record)
        self.audit.write(record)

    async def _call_tool(self, name: str, arguments: dict[str, Any], context: Context | None) -> Any:
        try:
            unknown = self._unknown_arguments(name, arguments or {})
            return unknown if unknown is not None else await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if exc.__cause__ is None and not self._tool_manager.get_tool(name):
                return await self._unknown_tool(name)
            return self._to_error_result(name, exc)

    def _unknown_arguments(self, name: str, arguments: dict[str, Any]) -> CallToolResult | None:
        """INVALID_PARAMETER for arguments the tool does not have: the SDK would drop them silently,
        so measure_volume(segment_nme="Tumor") would measure every segment instead."""
        tool = self._tool_manager.get_tool(name)
        if tool is None:
            return None
        known = tool.parameters.get("properties", {})
        extra = sorted(set(arguments) - set(known))
        if not extra:
            return None
        hints = {a: difflib.get_close_matches(a, list(known), n=1, cutoff=0.6) for a in extra}
        said = "; ".join(f"{a} (did you mean {h[0]}?)" if h else a for a, h in hints.items())
        return error_result(
            ErrorCode.INVALID_PARAMETER,
            f"{name} has no parameter {said}; it takes: {', '.join(known) or 'no arguments'}",
            {"unknown": extra, "parameters": list(known)},
        )

    async def _unknown_tool(self, name: str) -> CallToolResult:
        """UNKNOWN_TOOL with the closest names, so a client (or an assistant) can correct itself."""
        names = sorted(t.name for t in await self.list_tools())
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "tools/list shows the tools"
        return error_result(
            ErrorCode.UNKNOWN_TOOL,
            f"there is no tool named {name!r}; {hint}",
            {"tool": name, "close_matches": close},
        )

    @staticmethod
    def _to_error_result(name: str, exc: ToolError) -> CallToolResult:
        cause = exc.__cause__
        # a ToolError raised by a nested call wraps the original once more
        while isinstance(cause, ToolError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, SlicerMCPError):
            log.info("tool %s failed: %s", name, cause.code)
            return CallToolResult(content=[TextContent(type="text", text=cause.to_json())], is_error=True)
        if isinstance(cause, ValidationError):
            return _validation_error(cause)
        if cause is None:  # unknown tool and similar SDK-side refusals
            return error_result(ErrorCode.INVALID_PARAMETER, str(exc))
        log.error("tool %s crashed", name, exc_info=cause)
        return error_result(
            ErrorCode.INTERNAL_ERROR,
            f"the tool {name} failed unexpectedly ({type(cause).__name__}); the server log has the details",
        )


def result_bytes(result: Any) -> int:
    """The size of a tool result as JSON: its content, structured content and error flag (the SDK's
    own envelope, _meta and resultType, left out). Base64 image data is counted, not dumped again (it
    needs no JSON escaping, so its length is its size): a screenshot's 1 MB would cost ~1 ms a call."""
    blobs = 0
    content = getattr(result, "content", None)
    if isinstance(content, list) and any(isinstance(getattr(c, "data", None), str) for c in content):
        slim = []
        for item in content:
            data = getattr(item, "data", None)
            if isinstance(data, str):
                blobs += len(data)
                item = item.model_copy(update={"data": ""})
            slim.append(item)
        result = result.model_copy(update={"content": slim})
    dumped = result.model_dump_json(by_alias=True, exclude_none=True, exclude={"meta", "result_type"})
    return len(dumped.encode("utf-8")) + blobs


def _caller(context: Context | None) -> tuple[str | None, str | None]:
    """(the client's declared name/version, a short digest of the session id) of a call, if known.

    The session id is the one the SDK issued for the connection (as `tools.clients` keys namespaces
    by it), not the Mcp-Session-Id header a client sends: a sessionless request could send any."""
    if context is None:
        return None, None
    try:
        params = context.request_context.session.client_params
        sid = request_connection(context).session_id
    except (ValueError, AttributeError):  # no request: a call from the Slicer Python console
        return "console", None
    info = params.client_info if params is not None else None
    client = f"{info.name}/{info.version}"[:80] if info is not None else None
    session = hashlib.sha256(sid.encode()).hexdigest()[:12] if sid else None
    return client, session


def _code_of(result: CallToolResult) -> str:
    try:
        text = result.content[0].text  # type: ignore[union-attr]
        return str(json.loads(text)["error"]["code"])
    except (IndexError, AttributeError, KeyError, TypeError, ValueError):
        return ErrorCode.INTERNAL_ERROR.value


def build_server(services: Services) -> SlicerMCPServer:
    """The server with every tool and resource of the catalog registered."""
    from ..tools import register_all
    from ..tools.client_log import register_logging
    from ..tools.completions import register_completions
    from ..tools.prompts import register_prompts
    from ..tools.resources import register_resources
    from ..tools.sdk_internals import registered_tools

    server = SlicerMCPServer(services)
    register_all(server)
    register_resources(server, services)
    register_prompts(server)
    register_completions(server, services)
    register_logging(server)
    read_only = {t.name for t in registered_tools(server) if t.annotations and t.annotations.read_only_hint}
    server.live = LiveResources(services, server.bus, read_only)
    server.live.install(server)
    server.compact_output_schemas()
    return server
