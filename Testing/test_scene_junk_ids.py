"""get_node with junk for an id: INVALID_NODE_ID saying how to find a good one, never a crash
(issue 15 item 12).

The adversarial run sent JSON objects and arrays, NUL bytes and 10 KB strings as `node_id`; an id
with a NUL resolved as its prefix (VTK reads C strings). Whatever arrives, the client gets the code
the bridge spec gives an unknown node, and the message points at list_scene_nodes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fixtures.scene import call_tool, make_phantom_volume

JUNK: list[Any] = [
    {"id": "vtkMRMLScalarVolumeNode1"},
    ["vtkMRMLScalarVolumeNode1"],
    None,
    42,
    True,
    "",
    "vtkMRMLScalarVolumeNode1\x00x",
    "\x00",
    "x" * 10_240,
    "vtkMRMLScalarVolumeNode1" + " " * 10_000,
    "' OR 1=1 --",
]


@pytest.fixture
def scene_with_volume(mcp_server: Any, headless_services: Any, tmp_path: Any) -> str:
    loaded = call_tool(mcp_server, "load_volume", {"path": str(make_phantom_volume(tmp_path))})
    assert not loaded.is_error, loaded.content[0].text
    return loaded.structured_content["nodes"][0]["id"]


@pytest.mark.parametrize("junk", JUNK, ids=lambda j: type(j).__name__ + str(len(str(j))))
def test_junk_node_id_is_invalid_node_id(mcp_server: Any, scene_with_volume: str, junk: Any) -> None:
    result = call_tool(mcp_server, "get_node", {"node_id": junk})
    assert result.is_error
    error = json.loads(result.content[0].text)["error"]
    assert error["code"] == "INVALID_NODE_ID", error
    assert "list_scene_nodes" in error["message"] and len(error["message"]) < 600, error
    good = call_tool(mcp_server, "get_node", {"node_id": scene_with_volume})
    assert not good.is_error  # the scene is fine afterwards
