"""The catalog as a client sees it: every tool documented, typed and honestly annotated."""

from __future__ import annotations

import asyncio
import json

from mcp import Client

from SlicerMCPLib.core.errors import ErrorCode


def list_tools(server):
    async def main():
        async with Client(server) as client:
            return (await client.list_tools()).tools

    return asyncio.run(main())


def test_every_tool_is_documented_and_annotated(mcp_server) -> None:
    tools = list_tools(mcp_server)
    assert len(tools) >= 10
    for tool in tools:
        assert tool.description and len(tool.description) > 30, f"{tool.name}: the AI needs a description"
        ann = tool.annotations
        assert ann is not None, f"{tool.name}: no annotations"
        for hint in ("read_only_hint", "destructive_hint", "idempotent_hint", "open_world_hint"):
            assert getattr(ann, hint) is not None, f"{tool.name}: {hint} not set"
        if ann.read_only_hint:
            assert not ann.destructive_hint, f"{tool.name}: read-only tools are not destructive"
        for pname, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description"), f"{tool.name}.{pname}: parameter has no description"


def test_structured_output_is_declared(mcp_server) -> None:
    for tool in list_tools(mcp_server):
        assert tool.output_schema is not None, f"{tool.name}: no output schema (structured output)"


def test_output_schemas_are_flat_and_still_strict(mcp_server) -> None:
    """Clients re-validate every result: no $ref and no anyOf to walk per value, the same fields
    required and typed as the pydantic models say."""
    from jsonschema import Draft202012Validator

    from SlicerMCPLib.core.models import NodeList, NodeSummary, SegmentInfo, VolumeInfo

    tools = {tool.name: tool for tool in list_tools(mcp_server)}
    for name, tool in tools.items():
        text = json.dumps(tool.output_schema)
        assert "$ref" not in text and '"anyOf"' not in text and "prefixItems" not in text, name
    schema = tools["list_scene_nodes"].output_schema
    Draft202012Validator.check_schema(schema)
    node = schema["properties"]["nodes"]["items"]
    assert node["required"] == ["id", "name", "class_name"]
    assert node["properties"]["visible"]["type"] == ["boolean", "null"]
    assert node["properties"]["volume"]["properties"]["spacing"]["type"] == "array"
    volume = VolumeInfo(dimensions=(2, 3, 4), spacing=(1, 1, 2), origin=(0, 0, 0), scalar_range=(0, 9))
    segment = SegmentInfo(id="s1", name="Tumor", color=(1, 0, 0), label_value=1)
    good = NodeList(
        nodes=[
            NodeSummary(
                id="v1", name="CT", class_name="vtkMRMLScalarVolumeNode", visible=True, volume=volume
            ),
            NodeSummary(id="s", name="Seg", class_name="vtkMRMLSegmentationNode", segments=[segment]),
            NodeSummary(id="t", name="note", class_name="vtkMRMLTextNode"),
        ],
        total=3,
        offset=0,
        limit=100,
        has_more=False,
    ).model_dump(mode="json")
    validator = Draft202012Validator(schema)
    assert list(validator.iter_errors(good)) == []
    bad_type = json.loads(json.dumps(good))
    bad_type["nodes"][0]["visible"] = "yes"
    missing = json.loads(json.dumps(good))
    del missing["nodes"][0]["volume"]["spacing"]
    bad_segment = json.loads(json.dumps(good))
    bad_segment["nodes"][1]["segments"][0]["label_value"] = "one"
    for broken in (bad_type, missing, bad_segment):
        assert list(validator.iter_errors(broken)), broken


def test_gated_tools_say_how_to_enable_them(mcp_server) -> None:
    async def main():
        async with Client(mcp_server) as client:
            return await client.call_tool("execute_python", {"code": "print(1)"})

    result = asyncio.run(main())
    body = json.loads(result.content[0].text)["error"]
    assert result.is_error and body["code"] == ErrorCode.OPERATION_DISABLED
    assert "SLICER_MCP_ALLOW_EXECUTE_PYTHON" in body["message"]
    assert body["details"]["config_key"] == "allow.execute_python"


def test_bad_arguments_are_invalid_parameter(mcp_server) -> None:
    async def main():
        async with Client(mcp_server) as client:
            return [
                await client.call_tool("list_scene_nodes", {"limit": 0}),
                await client.call_tool("capture_screenshot", {"view_type": "oblique"}),
                await client.call_tool("set_layout", {"layout": "NoSuchLayout"}),
            ]

    for result in asyncio.run(main()):
        assert result.is_error
        assert json.loads(result.content[0].text)["error"]["code"] == "INVALID_PARAMETER"


def test_an_unknown_tool_has_its_own_code_and_the_close_names(mcp_server) -> None:
    async def main():
        async with Client(mcp_server) as client:
            return [await client.call_tool(name, {}) for name in ("list_scene_node", "no_such_thing_at_all")]

    typo, unknown = (json.loads(r.content[0].text)["error"] for r in asyncio.run(main()))
    assert typo["code"] == unknown["code"] == "UNKNOWN_TOOL"
    assert typo["details"]["close_matches"][0] == "list_scene_nodes"
    assert "did you mean list_scene_nodes" in typo["message"]
    assert unknown["details"]["close_matches"] == [] and "tools/list" in unknown["message"]


def test_calls_are_logged_without_arguments(mcp_server) -> None:
    async def main():
        async with Client(mcp_server) as client:
            await client.call_tool("list_scene_nodes", {"name": "Patient^Secret"})

    asyncio.run(main())
    record = mcp_server.services.call_log.recent(1)[0]
    assert record.tool == "list_scene_nodes" and record.ok
    assert "Secret" not in repr(record)


def test_close_releases_every_service_even_when_one_fails(headless_services) -> None:
    """Shutdown closes the later services and the backend although an earlier close raised."""

    class Broken:
        def close(self) -> None:
            raise OSError("socket already gone")

    class Recording:
        closed = False

        async def close(self) -> None:
            self.closed = True

    backend = headless_services.backend
    asyncio.run(backend.list_nodes(None, None, 0, 1))  # the backend now holds a scene index to release
    assert backend._index is not None
    headless_services.domain(Broken, lambda _: Broken())
    recording = headless_services.domain(Recording, lambda _: Recording())
    asyncio.run(headless_services.close())
    assert recording.closed
    assert backend._index is None


def test_a_failing_call_log_listener_does_not_fail_the_call(mcp_server) -> None:
    """A listener (the module panel's feed) that raises must not turn a good call into an error."""
    seen = []

    def broken(record) -> None:
        raise RuntimeError("the panel's widget was deleted")

    mcp_server.services.call_log.listeners[:] = [broken, seen.append]

    async def main():
        async with Client(mcp_server) as client:
            return await client.call_tool("list_scene_nodes", {})

    result = asyncio.run(main())
    assert not result.is_error, result.content
    assert [r.tool for r in seen] == ["list_scene_nodes"]


def test_every_tool_has_reference_docs(mcp_server) -> None:
    """docs/ names every tool (the tool references are part of the product)."""
    from fixtures.core import PROJECT_ROOT

    text = "\n".join(p.read_text(encoding="utf-8") for p in (PROJECT_ROOT / "docs").glob("*.md"))
    missing = [
        t.name for t in list_tools(mcp_server) if f"`{t.name}`" not in text and f"{t.name}(" not in text
    ]
    assert not missing, f"tools without reference docs: {missing}"


def test_every_error_code_is_in_the_error_reference() -> None:
    """docs/errors.md lists every code a client can receive, each in its own table row."""
    from fixtures.core import PROJECT_ROOT

    rows = (PROJECT_ROOT / "docs" / "errors.md").read_text(encoding="utf-8").splitlines()
    listed = {row.split("|")[1].strip().strip("`") for row in rows if row.startswith("| `")}
    assert listed == {str(code) for code in ErrorCode}


def test_compact_schema_leaves_recursive_schemas_and_mixed_tuples_alone() -> None:
    from SlicerMCPLib.serving.output_schema import compact_schema

    tree = {
        "$defs": {"Node": {"type": "object", "properties": {"kids": {"items": {"$ref": "#/$defs/Node"}}}}},
        "$ref": "#/$defs/Node",
    }
    assert compact_schema(tree) == tree
    mixed = {"prefixItems": [{"type": "string"}, {"type": "number"}], "minItems": 2, "maxItems": 2}
    assert compact_schema({"properties": {"pair": mixed}}) == {"properties": {"pair": mixed}}


def test_compact_schema_keeps_null_allowed_for_optional_enums(mcp_server) -> None:
    from jsonschema import Draft202012Validator

    tools = {tool.name: tool for tool in list_tools(mcp_server)}
    validator = Draft202012Validator(tools["capture_screenshot"].output_schema)
    shot = {"view_type": "axial", "width": 8, "height": 8, "renderer": "headless-vtk", "look_from_axis": None}
    assert list(validator.iter_errors(shot)) == []
    assert list(validator.iter_errors({**shot, "look_from_axis": "up"}))
    assert list(validator.iter_errors({**shot, "view_type": None}))
