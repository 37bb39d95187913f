"""The WebServer backend against the quirks of Slicer's real request handler (issue 14 §2).

First the stand-in is held to what Slicer's SlicerRequestHandler does (raw HTTP): typed and
dropped properties, a 500 or a stale picture from /slicer/slice. Then the same scenes are
read through the real `slicer-mcp` bridge, which must never pass those on: exact names,
attributes and geometry (or a note saying what is missing), SCREENSHOT_FAILED instead of an
error or a stale image, the same listing as the headless backend, and a status that says
"unreachable" when Slicer doesn't answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_bridge_webserver import raw_request

from fixtures.bridge import BridgeTarget, PeerProcess, bridge_client, bridge_env, start_peer, stop_peer
from fixtures.core import free_port
from fixtures.scene import _write_image, phantom_arrays

SPACING = 0.48828125  # prints as 0.488281 (6 significant digits)
ORIGIN_RAS = (-123.45678901234567, 98.76543210987654, -7.000001)
TRICKY_NAMES = ("1.2.840.10008", "0.50", "(none)", "12, 13", "007")
ATTRIBUTES = {"DICOM.SeriesInstanceUID": "1.2.840.113619.2.55.3", "Code": "007", "Flag": "true"}


@pytest.fixture(scope="module")
def fresh_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerProcess]:
    """A stand-in whose slice views were never drawn, exec off (Slicer's default)."""
    peer = start_peer(tmp_path_factory.mktemp("fresh-peer"), enable_exec=False)
    yield peer
    stop_peer(peer)


@pytest.fixture(scope="module")
def fine_volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A volume whose spacing and origin need more than 6 digits."""
    image, _, _ = phantom_arrays()
    ijk_to_ras = np.diag([-SPACING, -SPACING, SPACING, 1.0])
    ijk_to_ras[:3, 3] = ORIGIN_RAS
    return _write_image(image, ijk_to_ras, tmp_path_factory.mktemp("fine") / "fine.nrrd")


@pytest.fixture(scope="module")
def fine_geometry(fine_volume: Path) -> dict[str, Any]:
    """Spacing and origin of `fine_volume` as the headless backend reads them from the scene (the
    file's reader may move them by an ulp: the scene's own values are the truth)."""

    async def main() -> dict[str, Any]:
        async with bridge_client(["--backend", "headless"]) as client:
            loaded = ok(await client.call_tool("load_volume", {"path": str(fine_volume)}))
            return loaded["nodes"][0]["volume"]

    volume = asyncio.run(main())
    assert all(float(f"{v:.6g}") != v for v in volume["spacing"] + volume["origin"]), "needs >6 digits"
    return {"spacing": volume["spacing"], "origin": volume["origin"]}


def webserver_args(peer: PeerProcess) -> list[str]:
    return ["--backend", "webserver", "--webserver-url", peer.url]


def ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text if result.content else result
    return result.structured_content


def error_of(result: Any) -> dict[str, Any]:
    assert result.is_error, result.structured_content
    return json.loads(result.content[0].text)["error"]


def exec_on(peer: PeerProcess, source: str) -> Any:
    head, body = raw_request(peer.url, "POST", "/slicer/exec", source.encode())
    assert head.startswith(b"HTTP/1.1 200"), body
    return json.loads(body)


def test_peer_types_and_drops_properties_like_slicer(webserver_peer: PeerProcess) -> None:
    """SlicerRequestHandler.nodeProperties: number-like text typed, unconvertible lines dropped."""
    raw_request(webserver_peer.url, "DELETE", "/slicer/mrml")
    ids = exec_on(
        webserver_peer,
        "ids = []\n"
        f"for name in {TRICKY_NAMES!r}:\n"
        "    n = slicer.mrmlScene.AddNewNodeByClass('vtkMRMLScalarVolumeNode', name)\n"
        "    ids.append(n.GetID())\n"
        f"for k, v in {ATTRIBUTES!r}.items():\n"
        "    slicer.mrmlScene.GetNodeByID(ids[-1]).SetAttribute(k, v)\n"
        "__execResult = ids",
    )
    found = {}
    for node_id in ids:
        _, body = raw_request(webserver_peer.url, "GET", f"/slicer/mrml/properties?id={node_id}")
        found[node_id] = json.loads(body)[node_id]
    names = [found[i].get("Name") for i in ids]
    assert names == [None, 0.5, None, [12, 13], 7], "dropped, typed, dropped, a vector, an int"
    assert found[ids[-1]]["Attributes"] == {"Code": 7, "Flag": True}, "the DICOM UID line vanished"
    _, body = raw_request(webserver_peer.url, "GET", "/slicer/mrml/names?class=vtkMRMLScalarVolumeNode")
    assert json.loads(body) == list(TRICKY_NAMES), "/mrml/names returns names as they are"
    raw_request(webserver_peer.url, "DELETE", "/slicer/mrml")


def test_node_values_come_back_unaltered_through_the_bridge(
    webserver_peer: PeerProcess, fine_volume: Path, fine_geometry: dict[str, Any]
) -> None:
    """exec on: names, attributes and geometry exact; nothing typed or rounded reaches the client."""

    async def main() -> None:
        async with bridge_client(webserver_args(webserver_peer)) as client:
            ok(await client.call_tool("clear_scene", {}))
            ids = []
            for name in TRICKY_NAMES:
                loaded = ok(await client.call_tool("load_volume", {"path": str(fine_volume), "name": name}))
                ids.append(loaded["nodes"][0]["id"])
                assert loaded["nodes"][0]["name"] == name
            exec_on(
                webserver_peer,
                f"node = slicer.mrmlScene.GetNodeByID({ids[0]!r})\n"
                f"for k, v in {ATTRIBUTES!r}.items():\n"
                "    node.SetAttribute(k, v)\n",
            )
            listing = ok(
                await client.call_tool("list_scene_nodes", {"class_name": "vtkMRMLScalarVolumeNode"})
            )
            assert [n["name"] for n in listing["nodes"]] == list(TRICKY_NAMES)
            for node in listing["nodes"]:
                assert node["volume"]["spacing"] == fine_geometry["spacing"], "not 0.488281"
                assert node["volume"]["origin"] == fine_geometry["origin"]
            segmentation_id = exec_on(
                webserver_peer,
                "seg = slicer.mrmlScene.AddNewNodeByClass('vtkMRMLSegmentationNode', '0.50')\n"
                "seg.GetSegmentation().AddEmptySegment('s1', '007')\n"
                "__execResult = seg.GetID()",
            )
            _, printed = raw_request(
                webserver_peer.url, "GET", f"/slicer/mrml/properties?id={segmentation_id}"
            )
            segments = json.loads(printed)[segmentation_id]["Segmentation"]["Segments"]
            assert segments["s1"]["Name"] == 7, "the printout types the segment name"
            segmentations = ok(
                await client.call_tool("list_scene_nodes", {"class_name": "vtkMRMLSegmentationNode"})
            )
            assert [(n["name"], [s["name"] for s in n["segments"]]) for n in segmentations["nodes"]] == [
                ("0.50", ["007"])
            ]
            details = ok(await client.call_tool("get_node", {"node_id": ids[0]}))
            assert details["name"] == TRICKY_NAMES[0]
            assert details["attributes"] == ATTRIBUTES
            assert details["volume"]["spacing"] == fine_geometry["spacing"]
            assert details["notes"] == []
            for name, node_id in zip(TRICKY_NAMES, ids, strict=True):
                read = ok(await client.call_tool("get_node", {"node_id": node_id}))
                assert read["name"] == name
            ok(await client.call_tool("clear_scene", {}))

    asyncio.run(main())


def test_without_exec_nothing_altered_is_reported_and_the_note_says_what_is_missing(
    fresh_peer: PeerProcess, fine_volume: Path, fine_geometry: dict[str, Any]
) -> None:
    async def main() -> None:
        async with bridge_client(webserver_args(fresh_peer)) as client:
            ok(await client.call_tool("clear_scene", {}))
            loaded = ok(await client.call_tool("load_volume", {"path": str(fine_volume), "name": "007"}))
            node_id = loaded["nodes"][0]["id"]
            assert loaded["nodes"][0]["volume"]["spacing"] == fine_geometry["spacing"], "from the NRRD header"
            details = ok(await client.call_tool("get_node", {"node_id": node_id}))
            assert details["name"] == "007"
            assert details["volume"]["spacing"] == fine_geometry["spacing"]
            assert details["volume"]["origin"] == fine_geometry["origin"]
            assert details["attributes"] == {}
            assert any("Slicer API exec" in n and "attributes" in n for n in details["notes"])
            assert not {"Name", "Description", "Spacing", "Origin"} & set(details["properties"])
            ok(await client.call_tool("clear_scene", {}))

    asyncio.run(main())


def test_slice_of_an_empty_or_cleared_scene(fresh_peer: PeerProcess, fine_volume: Path) -> None:
    """Slicer: a never-drawn view without a volume is a 500, a drawn one returns its old PNG after a
    clear. The bridge: SCREENSHOT_FAILED ("load a volume first") both times, never a stale image."""
    url = fresh_peer.url
    raw_request(url, "DELETE", "/slicer/mrml")
    head, body = raw_request(url, "GET", "/slicer/slice?view=green&orientation=Coronal")
    assert head.startswith(b"HTTP/1.1 500")
    assert json.loads(body) == {
        "success": False,
        "message": "Server error: 'NoneType' object has no attribute 'GetDataType'",
    }

    async def main() -> None:
        async with bridge_client(webserver_args(fresh_peer)) as client:
            error = error_of(await client.call_tool("capture_screenshot", {"view_type": "axial"}))
            assert error["code"] == "SCREENSHOT_FAILED" and "load a volume first" in error["message"]
            ok(await client.call_tool("load_volume", {"path": str(fine_volume)}))
            shot = await client.call_tool(
                "capture_screenshot", {"view_type": "axial", "scroll_position": 0.5}
            )
            assert ok(shot)["width"] > 0
            _, before = raw_request(url, "GET", "/slicer/slice?view=red&orientation=Axial")
            ok(await client.call_tool("clear_scene", {}))
            _, stale = raw_request(url, "GET", "/slicer/slice?view=red&orientation=Axial")
            assert stale == before and stale[:4] == b"\x89PNG", "the stand-in keeps Slicer's stale picture"
            error = error_of(await client.call_tool("capture_screenshot", {"view_type": "axial"}))
            assert error["code"] == "SCREENSHOT_FAILED" and "load a volume first" in error["message"]

    asyncio.run(main())


def test_an_emptied_scene_lists_no_nodes_on_every_backend(
    bridge_target: BridgeTarget, fine_volume: Path
) -> None:
    """Application nodes (subject hierarchy, views, colours, singletons) are filtered the same way."""

    async def main() -> None:
        async with bridge_client(bridge_target.args, bridge_target.env) as client:
            ok(await client.call_tool("clear_scene", {}))
            empty = ok(await client.call_tool("list_scene_nodes", {}))
            assert empty["total"] == 0, [(n["id"], n["class_name"]) for n in empty["nodes"]]
            ok(await client.call_tool("load_volume", {"path": str(fine_volume), "name": "Fine"}))
            one = ok(await client.call_tool("list_scene_nodes", {}))
            assert [(n["name"], n["class_name"]) for n in one["nodes"]] == [
                ("Fine", "vtkMRMLScalarVolumeNode")
            ]
            hierarchy = ok(
                await client.call_tool("list_scene_nodes", {"class_name": "vtkMRMLSubjectHierarchyNode"})
            )
            assert hierarchy["total"] == 1, "still listed when asked for by class"
            ok(await client.call_tool("clear_scene", {}))

    asyncio.run(main())


def test_status_says_unreachable_and_why() -> None:
    """A closed port: slicer://status is read (not a JSON-RPC error) and names the coded error."""
    url = f"http://127.0.0.1:{free_port()}"

    async def main() -> dict[str, Any]:
        async with bridge_client(["--backend", "webserver", "--webserver-url", url], bridge_env()) as client:
            status = await client.read_resource("slicer://status")
            return json.loads(status.contents[0].text)

    status = asyncio.run(main())
    assert status["backend"] == "webserver" and status["connection"] == "unreachable"
    assert status["error"]["code"] == "SLICER_CONNECTION_ERROR" and url in status["error"]["message"]
    assert status["node_count"] is None


def test_exact_geometry_is_fetched_once_per_node_version(
    fresh_peer: PeerProcess, fine_volume: Path, fine_geometry: dict[str, Any]
) -> None:
    """Without exec each volume's NRRD header costs Slicer the whole volume's bytes: one fetch per
    node and MTime, then the kept values (still exact)."""
    from SlicerMCPLib.backends.webserver import WebServerBackend
    from SlicerMCPLib.core.config import Config

    async def main() -> None:
        setup = WebServerBackend(Config(), fresh_peer.url)
        await setup.clear_scene()
        await setup.load_volume(fine_volume, False, "Fine")
        await setup.close()
        backend = WebServerBackend(Config(), fresh_peer.url)
        counts, spacings = [], []
        for _ in range(2):
            before = backend.http.connections_opened
            listing = await backend.list_nodes(None, None, 0, 100)
            counts.append(backend.http.connections_opened - before)
            spacings.append(list(listing.nodes[0].volume.spacing))  # type: ignore[union-attr]
        # first: /slicer/exec (off) and /slicer/volume once each; second: neither
        assert counts[0] == counts[1] + 2, counts
        assert spacings == [fine_geometry["spacing"]] * 2
        await backend.clear_scene()
        await backend.close()

    asyncio.run(main())
