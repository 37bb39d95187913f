"""Property-based fuzzing of every scene tool's arguments through the in-memory MCP client.

Whatever the arguments: a result or a coded error (never INTERNAL_ERROR, never a hang), and
the scene is still consistent afterwards (every listed node can be read back).
"""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from fixtures.core import free_port
from fixtures.scene import make_labelmap, make_phantom_volume
from SlicerMCPLib.core.errors import ErrorCode
from SlicerMCPLib.scene.demo import load_demo_scene

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CODES = {c.value for c in ErrorCode} - {ErrorCode.INTERNAL_ERROR.value}

text = st.text(max_size=40)
maybe_text = st.none() | text
node_ids = (
    st.sampled_from(
        [
            "vtkMRMLScalarVolumeNode1",
            "vtkMRMLSegmentationNode1",
            "vtkMRMLSliceNodeRed",
            "vtkMRMLColorTableNodeGrey",
        ]
    )
    | text
)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-0.5, 1.5)
ints = st.integers(-5, 1200) | st.integers()


@pytest.fixture
def fuzz_server(mcp_server, headless_services, run_on_scene, clean_backend, tmp_path):
    run_on_scene(lambda: load_demo_scene(clean_backend))
    headless_services.config.sample_data.base_url = f"http://127.0.0.1:{free_port()}"  # never the internet
    headless_services.config.sample_data.cache_dir = str(tmp_path / "cache")
    return mcp_server


def drop_none(args: dict) -> dict:
    return {k: v for k, v in args.items() if v is not None}


def check_calls(server, calls: list[tuple[str, dict]]) -> None:
    async def main():
        async with Client(server) as client:
            out = []
            for name, args in calls:
                out.append(await asyncio.wait_for(client.call_tool(name, args), 60))
            listed = await client.call_tool("list_scene_nodes", {"limit": 1000})
            for node in listed.structured_content["nodes"]:
                got = await client.call_tool("get_node", {"node_id": node["id"]})
                assert not got.is_error, got.content[0].text
            status = json.loads((await client.read_resource("slicer://status")).contents[0].text)
            assert status["node_count"] > 0
            return out

    for result in asyncio.run(main()):
        if result.is_error:
            body = json.loads(result.content[0].text)["error"]
            assert body["code"] in CODES, body
            assert body["message"]
        else:
            assert result.structured_content is not None


@FUZZ
@given(
    class_name=maybe_text | st.sampled_from(["vtkMRMLVolumeNode", "vtkMRMLNode", "vtkObject"]),
    name=maybe_text,
    offset=st.none() | ints,
    limit=st.none() | ints,
)
def test_fuzz_list_scene_nodes(fuzz_server, class_name, name, offset, limit) -> None:
    check_calls(
        fuzz_server,
        [("list_scene_nodes", drop_none(dict(class_name=class_name, name=name, offset=offset, limit=limit)))],
    )


@FUZZ
@given(node_id=node_ids | st.integers() | st.none())
def test_fuzz_get_node(fuzz_server, node_id) -> None:
    check_calls(fuzz_server, [("get_node", drop_none({"node_id": node_id}))])


@FUZZ
@given(
    view_type=st.none() | st.sampled_from(["axial", "sagittal", "coronal", "3d", "full", "oblique", ""]),
    scroll_position=st.none() | floats,
    look_from_axis=st.none()
    | st.sampled_from(["left", "right", "anterior", "posterior", "superior", "inferior", "up"]),
    size=st.none() | st.integers(-10, 400) | st.sampled_from([64, 2048, 4097]),
)
def test_fuzz_capture_screenshot(fuzz_server, view_type, scroll_position, look_from_axis, size) -> None:
    if scroll_position is not None and math.isnan(scroll_position):
        scroll_position = float("nan")
    args = drop_none(
        dict(view_type=view_type, scroll_position=scroll_position, look_from_axis=look_from_axis, size=size)
    )
    check_calls(fuzz_server, [("capture_screenshot", args)])


@FUZZ
@given(node_id=node_ids, segment=maybe_text | st.sampled_from(["Brain", "lesion", "1", "-1", "99999999999"]))
def test_fuzz_measure_volume(fuzz_server, node_id, segment) -> None:
    check_calls(fuzz_server, [("measure_volume", drop_none({"node_id": node_id, "segment": segment}))])


@FUZZ
@given(
    which=st.sampled_from(["phantom", "labels", "missing", "relative", "dir", "text"]) | text,
    labelmap=st.none() | st.booleans(),
    name=maybe_text,
)
def test_fuzz_load_volume(fuzz_server, tmp_path_factory, which, labelmap, name) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    paths = {
        "phantom": lambda: str(make_phantom_volume(folder)),
        "labels": lambda: str(make_labelmap(folder)),
        "missing": lambda: str(folder / "missing.nrrd"),
        "relative": lambda: "phantom.nrrd",
        "dir": lambda: str(folder),
    }
    if which == "text":
        junk = folder / "junk.nii.gz"
        junk.write_bytes(b"\x00\x01 not a volume")
        path = str(junk)
    else:
        path = paths.get(which, lambda: which)()
    check_calls(fuzz_server, [("load_volume", drop_none({"path": path, "labelmap": labelmap, "name": name}))])


@FUZZ
@given(
    layout=st.sampled_from(["FourUp", "OneUp3D", "Conventional", "Dual3D", "nope"]) | text,
    gui_mode=st.none() | st.sampled_from(["full", "viewers", "kiosk"]),
)
def test_fuzz_set_layout_then_full_view(fuzz_server, layout, gui_mode) -> None:
    check_calls(
        fuzz_server,
        [
            ("set_layout", drop_none({"layout": layout, "gui_mode": gui_mode})),
            ("capture_screenshot", {"view_type": "full", "size": 128}),
        ],
    )


@FUZZ
@given(name=text | st.sampled_from(["MRHead", "CTChest"]))
def test_fuzz_sample_data(fuzz_server, name) -> None:
    check_calls(fuzz_server, [("list_sample_data", {}), ("load_sample_data", {"name": name})])


@FUZZ
@given(
    code=text | st.sampled_from(["1/0", "raise SystemExit", "print('x' * 10)", "scene.GetNumberOfNodes()"]),
    enabled=st.booleans(),
)
def test_fuzz_execute_python(fuzz_server, headless_services, code, enabled) -> None:
    headless_services.config.allow.execute_python = enabled
    check_calls(fuzz_server, [("execute_python", {"code": code})])


@FUZZ
@given(extra=st.dictionaries(st.sampled_from(["force", "x", "node_id"]), st.integers() | text, max_size=2))
def test_fuzz_clear_scene(fuzz_server, extra) -> None:
    check_calls(fuzz_server, [("clear_scene", extra), ("list_scene_nodes", {})])
