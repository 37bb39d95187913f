"""Volume files are vetted before a reader opens them: data files a header names stay in its folder,
FIFOs and devices are refused, declared sizes are capped, and the voxels are read off the main thread."""

from __future__ import annotations

import asyncio
import gzip
import os
import threading

import numpy as np
import pytest
from mcp import Client

from fixtures.scene import call_tool, error_of, make_phantom_volume
from SlicerMCPLib.core.errors import ErrorCode


def nhdr(folder, data_file: str, sizes="1 1 1", kind="uchar", extra="") -> str:
    path = folder / "vol.nhdr"
    path.write_text(
        f"NRRD0004\ntype: {kind}\ndimension: 3\nsizes: {sizes}\nencoding: raw\n{extra}data file: {data_file}\n"
    )
    return str(path)


def mhd(folder, data_file: str, header_size: int = 0) -> str:
    path = folder / "vol.mhd"
    path.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 1 1 1\nElementType = MET_UCHAR\n"
        f"HeaderSize = {header_size}\nElementDataFile = {data_file}\n"
    )
    return str(path)


def refused(server, path: str) -> dict:
    body = error_of(call_tool(server, "load_volume", {"path": path}))
    assert body["code"] == ErrorCode.INVALID_PARAMETER, body
    assert (
        call_tool(server, "list_scene_nodes", {"class_name": "vtkMRMLVolumeNode"}).structured_content["total"]
        == 0
    ), "a refused file leaves the scene unchanged"
    return body


@pytest.fixture
def secret(tmp_path):
    """A file outside the volume's folder, as the server's token file is."""
    path = tmp_path / "secret"
    path.write_bytes(b"S3CRET-token")
    folder = tmp_path / "volume"
    folder.mkdir()
    return folder, path


def test_nhdr_data_file_outside_its_folder_is_refused(mcp_server, secret) -> None:
    folder, path = secret
    assert "absolute path" in refused(mcp_server, nhdr(folder, str(path)))["message"]
    assert "outside its folder" in refused(mcp_server, nhdr(folder, "../secret"))["message"]
    refused(mcp_server, nhdr(folder, "/etc/passwd"))
    (folder / "link.raw").symlink_to(path)
    assert "link to a place outside" in refused(mcp_server, nhdr(folder, "link.raw"))["message"]


def test_nhdr_list_and_format_forms_are_checked_file_by_file(mcp_server, secret) -> None:
    folder, _ = secret
    (folder / "a.raw").write_bytes(b"\x01")
    refused(mcp_server, nhdr(folder, "LIST 2\na.raw\n../secret", sizes="1 1 2"))
    refused(mcp_server, nhdr(folder, "../slice%d.raw 1 2 1 2", sizes="1 1 2"))
    refused(mcp_server, nhdr(folder, "slice%d.raw 1 2 1 2", sizes="1 1 2"))  # slice1.raw does not exist


def test_mhd_element_data_file_outside_or_through_header_size_is_refused(mcp_server, secret) -> None:
    folder, path = secret
    refused(mcp_server, mhd(folder, str(path), header_size=3))
    refused(mcp_server, mhd(folder, "../secret", header_size=5))
    refused(mcp_server, mhd(folder, "LIST\n" + str(path)))
    (folder / "vol.mha").write_text(
        "NDims = 3\nDimSize = 1 1 1\nElementType = MET_UCHAR\nElementDataFile = ../secret\n"
    )
    refused(mcp_server, str(folder / "vol.mha"))


def test_fifo_and_device_data_files_are_refused_without_opening_them(mcp_server, tmp_path) -> None:
    """A FIFO blocks a reader (with the GIL held, in Slicer's volumes logic) until a writer comes:
    here a writer feeds one voxel whenever someone opens it, so a reader that opens it loads it."""
    fifo = tmp_path / "voxels.raw"
    os.mkfifo(fifo)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader yet
                stop.wait(0.01)
                continue
            os.write(fd, b"\x07")
            os.close(fd)

    feeder = threading.Thread(target=writer, daemon=True)
    feeder.start()
    try:
        assert "not a regular file" in refused(mcp_server, nhdr(tmp_path, "voxels.raw"))["message"]
        refused(mcp_server, str(fifo.rename(tmp_path / "pipe.nrrd")))
    finally:
        stop.set()
        feeder.join(5)
    (tmp_path / "null.raw").symlink_to("/dev/zero")
    refused(mcp_server, nhdr(tmp_path, "null.raw"))


def test_declared_size_over_the_limit_is_refused_before_reading(mcp_server, scene_config, tmp_path) -> None:
    """A small gzip file declaring 128 MiB of voxels: refused by the header alone."""
    scene_config.limits.max_volume_bytes = 64 << 20
    bomb = tmp_path / "bomb.nrrd"
    header = b"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 512 512 512\nencoding: gzip\n\n"
    bomb.write_bytes(header + gzip.compress(bytes(512 * 512 * 512), 9))
    assert bomb.stat().st_size < 1 << 20
    body = refused(mcp_server, str(bomb))
    assert body["details"]["declared_bytes"] == 512**3 and "limits.max_volume_bytes" in body["message"]
    nii = tmp_path / "bomb.nii.gz"
    import SimpleITK as sitk

    sitk.WriteImage(sitk.Image(512, 512, 512, sitk.sitkUInt8), str(nii), useCompression=True)
    assert refused(mcp_server, str(nii))["details"]["declared_bytes"] == 512**3
    scene_config.limits.max_volume_bytes = 1 << 30
    assert not call_tool(mcp_server, "load_volume", {"path": str(bomb)}).is_error


def test_default_volume_limit_is_sized_for_this_machine() -> None:
    from SlicerMCPLib.core.config import LimitSettings, quarter_of_memory

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert LimitSettings().volume_bytes() == quarter_of_memory() == max(256 << 20, total // 4)
    assert LimitSettings(max_volume_bytes=5).volume_bytes() == 5


def test_files_in_the_headers_folder_still_load(mcp_server, tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "v.raw").write_bytes(bytes(range(8)))
    result = call_tool(mcp_server, "load_volume", {"path": nhdr(tmp_path, "sub/v.raw", sizes="2 2 2")})
    assert not result.is_error, result.content[0].text
    assert result.structured_content["nodes"][0]["volume"]["scalar_range"] == [0, 7]
    (tmp_path / "m.raw").write_bytes(b"HDR\x05")
    result = call_tool(mcp_server, "load_volume", {"path": mhd(tmp_path, "m.raw", header_size=3)})
    assert result.structured_content["nodes"][0]["volume"]["scalar_range"] == [5, 5]
    phantom = make_phantom_volume(tmp_path, ".mha")
    assert not call_tool(mcp_server, "load_volume", {"path": str(phantom)}).is_error


def test_scene_keeps_answering_while_a_large_volume_is_read(mcp_server, scene_config, tmp_path) -> None:
    """While the voxels of a large file are read and decompressed, other scene calls complete: the main
    thread only makes the node. (Slicer's volumes logic reading on the main thread holds the GIL.)"""
    import SimpleITK as sitk

    big = tmp_path / "big.nrrd"
    rng = np.random.default_rng(1)
    sitk.WriteImage(
        sitk.GetImageFromArray(rng.integers(0, 50, (160, 512, 512), dtype=np.int16)), str(big), True
    )

    async def main():
        async with Client(mcp_server) as client:
            load = asyncio.create_task(client.call_tool("load_volume", {"path": str(big)}))
            answered_during_load = 0
            while not load.done():
                listed = await client.call_tool("list_scene_nodes", {"class_name": "vtkMRMLVolumeNode"})
                if not load.done() and listed.structured_content["total"] == 0:
                    answered_during_load += 1
            return await load, answered_during_load

    loaded, answered = asyncio.run(main())
    assert not loaded.is_error, loaded.content[0].text
    assert answered >= 3, "scene calls waited for the whole load"
