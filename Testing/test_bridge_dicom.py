"""DICOM through the WebServer backend: a series from a real Orthanc lands in Slicer via POST /slicer/volume."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from mcp import Client

from fixtures.bridge import PeerProcess
from fixtures.orthanc import Orthanc, make_ct_series, orthanc_config
from SlicerMCPLib.backends.webserver import WebServerBackend
from SlicerMCPLib.core.services import Services
from SlicerMCPLib.dicom.volume import LPS_TO_RAS
from SlicerMCPLib.serving.server import build_server


def test_load_series_into_slicer_through_the_webserver(
    orthanc: Orthanc, webserver_peer: PeerProcess, tmp_path: Path
) -> None:
    spec, datasets = make_ct_series(slices=6)
    orthanc.upload(datasets)
    for d in datasets:
        d.save_as(tmp_path / f"{d.SOPInstanceUID}.dcm", enforce_file_format=True)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path)))
    image = reader.Execute()

    config = orthanc_config(orthanc)
    backend = WebServerBackend(config, webserver_peer.url)
    services = Services(config=config, backend=backend)

    async def main() -> tuple[dict[str, Any], Any, dict[str, Any]]:
        await backend.clear_scene()
        async with Client(build_server(services)) as client:
            result = await client.call_tool("load_series", {"series_instance_uid": spec.series_uid})
            assert not result.is_error, result.content[0].text
            node = result.structured_content["loaded"][0]["node"]
            exported = await backend.export_volume(node["id"])
            details = await client.call_tool("get_node", {"node_id": node["id"]})
        await services.close()
        return node, exported, details.structured_content

    node, exported, details = asyncio.run(main())
    assert node["name"] == spec.description
    np.testing.assert_array_equal(exported.array, sitk.GetArrayFromImage(image))
    m = LPS_TO_RAS @ exported.ijk_to_ras
    np.testing.assert_allclose(m[:3, 3], image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(m[:3, :3], axis=0), image.GetSpacing(), atol=1e-5)
    assert details["attributes"]["DICOM.SeriesInstanceUID"] == spec.series_uid, "set through /slicer/exec"
