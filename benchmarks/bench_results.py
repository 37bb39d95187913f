"""Results out: DICOM SEG export of a 512x512x300 segmentation, and storing + reading it back vs dcmtk.

Starts Orthanc as Testing/fixtures/orthanc.py does (TCP_NODELAY=1 for it and the dcmtk tools),
uploads a 300-slice 512x512 CT, loads it into a headless scene and adds a segmentation over it
(a lesion: a 60-voxel-radius sphere; an organ: a slab around it, two segments apart;
the encode is also timed with the slab overlapping the sphere). Each round, one after the other:
  build:    highdicom SEG encode alone (dicom/seg_export.build_seg, source headers in hand)
  export:   export_dicom_seg through the in-memory MCP client (scene masks, WADO-RS metadata of
            the 300 source images, encode, file), of the segments apart and of them overlapping
  ours:     store_results_to_pacs (C-STORE + instance-level C-FIND verify on that association)
            + retrieve_series (C-GET; the series is one we stored, so no C-FIND lists it first)
  dcmtk:    storescu of the same SEG file + getscu of its series, the reference
Prints medians and the ratio ours / dcmtk per round.
Run: python benchmarks/bench_results.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

from mcp import Client  # noqa: E402

from fixtures.orthanc import OUR_AET, make_ct_series, orthanc_config, start_orthanc, stop_orthanc  # noqa: E402
from SlicerMCPLib.core.gateway import SceneThread  # noqa: E402
from SlicerMCPLib.core.log_levels import cap_third_party_loggers  # noqa: E402
from SlicerMCPLib.core.scene_backend import SegmentationArray, SegmentMask  # noqa: E402
from SlicerMCPLib.core.services import Services  # noqa: E402
from SlicerMCPLib.dicom.seg_export import build_seg  # noqa: E402
from SlicerMCPLib.hosts.headless import create_headless_backend  # noqa: E402
from SlicerMCPLib.scene import segment_io  # noqa: E402
from SlicerMCPLib.serving.server import build_server  # noqa: E402


def _dcmtk(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    cap_third_party_loggers()  # as slicer-mcp does: pynetdicom's INFO lines per message cost time
    work = Path(tempfile.mkdtemp(prefix="bench-results-"))
    os.environ["TCP_NODELAY"] = "1"
    orthanc = start_orthanc(work)
    scene = SceneThread().start()
    try:
        spec, datasets = make_ct_series(slices=300, rows=512, columns=512, shuffle=False)
        orthanc.upload(datasets)
        del datasets
        config = orthanc_config(orthanc, allow={"dicom_send": True})
        backend = scene.gateway.call(lambda: create_headless_backend(scene.gateway, config), 120)
        services = Services(config=config, backend=backend)
        server = build_server(services)

        async def call(client: Any, name: str, args: dict[str, Any]) -> dict[str, Any]:
            result = await client.call_tool(name, args)
            assert not result.is_error, result.content[0].text
            return result.structured_content

        async def run() -> dict[str, list[float]]:
            times: dict[str, list[float]] = {
                k: []
                for k in (
                    "build",
                    "build_overlap",
                    "export",
                    "export_overlap",
                    "store",
                    "store_tool",
                    "retrieve",
                    "ours",
                    "dcmtk",
                )
            }
            async with Client(server) as client:
                loaded = await call(client, "load_series", {"series_instance_uid": spec.series_uid})
                volume_id = loaded["loaded"][0]["node"]["id"]
                k, j, i = np.ogrid[:300, :512, :512]
                sphere = (k - 150) ** 2 * 0.2 + (j - 256) ** 2 + (
                    i - 256
                ) ** 2 < 60**2  # 2.5 mm slices, 0.8 mm rows
                slab = np.zeros((300, 512, 512), bool)
                slab[120:180, 200:320, 150:400] = True
                overlapping = SegmentationArray(
                    "Overlap",
                    [SegmentMask("1", "Lesion", sphere), SegmentMask("2", "Liver", slab.copy())],
                    volume_id,
                )
                slab &= ~sphere  # the organ around the lesion: the segments do not overlap
                seg_array = SegmentationArray(
                    "Bench", [SegmentMask("1", "Lesion", sphere), SegmentMask("2", "Liver", slab)], volume_id
                )
                seg_id = scene.gateway.call(
                    lambda: segment_io.add_segmentation(backend.app, seg_array, "bench").GetID(), 300
                )
                overlap_id = scene.gateway.call(
                    lambda: segment_io.add_segmentation(backend.app, overlapping, "bench").GetID(), 300
                )
                exported = await backend.export_segmentation(seg_id, None, None)
                from SlicerMCPLib.dicom.service import DicomService
                from SlicerMCPLib.tools.results import _source_headers

                headers = _source_headers(services.domain(DicomService), exported)
                overlapping.ijk_to_ras = exported.ijk_to_ras
                print(
                    f"segments: {int(sphere.sum())} + {int(slab.sum())} voxels; {len(headers)} source headers"
                )
                for n in range(rounds):
                    t0 = time.perf_counter()
                    build_seg(exported, headers)
                    times["build"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    build_seg(overlapping, headers)
                    times["build_overlap"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    seg = await call(client, "export_dicom_seg", {"segmentation_node_id": seg_id})
                    times["export"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    over = await call(client, "export_dicom_seg", {"segmentation_node_id": overlap_id})
                    times["export_overlap"].append(time.perf_counter() - t0)
                    assert over["frames"] == seg["frames"]
                    t0 = time.perf_counter()
                    stored = await call(
                        client,
                        "store_results_to_pacs",
                        {"sop_instance_uids": [seg["sop_instance_uid"]], "method": "c-store"},
                    )
                    t1 = time.perf_counter()
                    got = await call(
                        client,
                        "retrieve_series",
                        {
                            "series_instance_uid": seg["series_instance_uid"],
                            "study_instance_uid": spec.study_uid,
                            "method": "c-get",
                        },
                    )
                    t2 = time.perf_counter()
                    assert got["instances"] == 1
                    times["store"].append(t1 - t0)
                    times["store_tool"].append(stored["seconds"])
                    times["retrieve"].append(t2 - t1)
                    times["ours"].append(t2 - t0)
                    # the same file, stored again under dcmtk (Orthanc accepts the duplicate) and fetched
                    out = work / f"getscu{n}"
                    out.mkdir()
                    ref = _dcmtk(
                        [
                            "storescu",
                            "-R",
                            "-aet",
                            OUR_AET,
                            "-aec",
                            orthanc.aet,
                            "127.0.0.1",
                            str(orthanc.dicom_port),
                            seg["file"],
                        ]
                    )
                    ref += _dcmtk(
                        [
                            "getscu",
                            "-S",
                            "-aet",
                            OUR_AET,
                            "-aec",
                            orthanc.aet,
                            "-od",
                            str(out),
                            "-k",
                            "QueryRetrieveLevel=SERIES",
                            "-k",
                            f"StudyInstanceUID={spec.study_uid}",
                            "-k",
                            f"SeriesInstanceUID={seg['series_instance_uid']}",
                            "127.0.0.1",
                            str(orthanc.dicom_port),
                        ]  # fmt: skip
                    )
                    assert len(list(out.iterdir())) == 1
                    times["dcmtk"].append(ref)
                    print(
                        f"round {n + 1}: build {times['build'][-1]:.2f} s (overlapping {times['build_overlap'][-1]:.2f} s), export {times['export'][-1]:.2f} s "
                        f"(overlapping {times['export_overlap'][-1]:.2f} s) "
                        f"({seg['frames']} frames, {seg['bytes'] / 1e6:.1f} MB), store {times['store'][-1]:.2f} s + "
                        f"retrieve {times['retrieve'][-1]:.2f} s = {times['ours'][-1]:.2f} s vs dcmtk {ref:.2f} s "
                        f"({times['ours'][-1] / ref:.2f}x)"
                    )
            return times

        times = asyncio.run(run())
        ratios = [o / d for o, d in zip(times["ours"], times["dcmtk"], strict=True)]
        print("\n| what | median |\n| --- | --- |")
        for key, label in (
            ("build", "SEG encode (highdicom), 2 segments over 300 x 512x512, apart"),
            ("build_overlap", "SEG encode, 2 overlapping segments (highdicom's overlap check)"),
            ("export", "export_dicom_seg through MCP (masks, metadata, encode, file)"),
            ("export_overlap", "export_dicom_seg through MCP, segments overlapping"),
            ("store", "store_results_to_pacs, C-STORE + C-FIND verify on one association"),
            ("store_tool", "  of which inside the tool (send + verify)"),
            ("retrieve", "retrieve_series of the SEG, C-GET (no listing C-FIND: a series we stored)"),
            ("ours", "store + read back, ours"),
            ("dcmtk", "storescu + getscu of the same file (reference)"),
        ):
            print(f"| {label} | {statistics.median(times[key]):.2f} s |")
        print(
            f"| ratio ours / dcmtk | {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)}) |"
        )
        services_dicom = services._domains.get("dicom")
        if services_dicom is not None:
            services_dicom.close()
        asyncio.run(backend.close())
    finally:
        scene.stop()
        stop_orthanc(orthanc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
