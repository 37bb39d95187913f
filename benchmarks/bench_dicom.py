"""DICOM retrieve + load of a 300-slice 512x512 CT from Orthanc, against dcmtk getscu in the same run.

Starts Orthanc as Testing/fixtures/orthanc.py does, uploads a synthetic CT, then times
  reference: dcmtk `getscu` C-GET of the series to disk (TCP_NODELAY=1)
  retrieve only: our C-GET, C-MOVE (to our Storage SCP) and DICOMweb WADO-RS to disk
  load_series: the MCP tool through the in-memory client (retrieve, verify, decode, and
               the volume node created in a headless slicer-core scene) by each method
Prints the best of N runs and ratios to getscu. Run: python benchmarks/bench_dicom.py [N] [SLICES]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

from mcp import Client  # noqa: E402

from fixtures.orthanc import (  # noqa: E402
    OUR_AET,
    make_ct_series,
    orthanc_config,
    start_orthanc,
    stop_orthanc,
)
from SlicerMCPLib.core.gateway import SceneThread  # noqa: E402
from SlicerMCPLib.core.services import Services  # noqa: E402
from SlicerMCPLib.dicom.move import Target  # noqa: E402
from SlicerMCPLib.dicom.service import DicomService  # noqa: E402
from SlicerMCPLib.hosts.headless import create_headless_backend  # noqa: E402
from SlicerMCPLib.scene import data_io  # noqa: E402
from SlicerMCPLib.serving.server import build_server  # noqa: E402


def best(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    slices = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    work = Path(tempfile.mkdtemp(prefix="bench-dicom-"))
    orthanc = start_orthanc(work)
    scene = SceneThread().start()
    try:
        spec, datasets = make_ct_series(slices=slices, rows=512, columns=512, shuffle=False)
        t0 = time.perf_counter()
        orthanc.upload(datasets)
        size_mb = sum(len(d.PixelData) for d in datasets) / 1e6
        print(
            f"uploaded {slices} x 512x512 CT ({size_mb:.0f} MB pixel data) in {time.perf_counter() - t0:.1f} s"
        )
        target = Target(spec.study_uid, spec.series_uid)

        def getscu() -> None:
            out = work / "getscu"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            subprocess.run(
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
                    f"SeriesInstanceUID={spec.series_uid}",
                    "127.0.0.1",
                    str(orthanc.dicom_port),
                ],  # fmt: skip
                check=True,
                env={**os.environ, "TCP_NODELAY": "1"},
                capture_output=True,
            )
            assert len(list(out.iterdir())) == slices

        reference = best(getscu, runs)
        rows = [("reference: dcmtk getscu (C-GET to disk)", reference)]

        def getscu_and_itk() -> None:
            import SimpleITK as sitk

            getscu()
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(work / "getscu")))
            reader.Execute()

        rows.append(("context: getscu + SimpleITK (GDCM) reading the files", best(getscu_and_itk, runs)))

        config = orthanc_config(orthanc)
        service = DicomService(config)
        for method in ("c-get", "c-move", "dicomweb"):

            def fetch(method: str = method) -> None:
                result = service.retrieve_to_storage(target, method)  # type: ignore[arg-type]
                assert result.instances == slices
                shutil.rmtree(result.directory)

            rows.append((f"retrieve to disk, {method}", best(fetch, runs)))
        service.close()

        backend = scene.gateway.call(lambda: create_headless_backend(scene.gateway, config), 120)
        services = Services(config=config, backend=backend)
        server = build_server(services)

        notes: list[str] = []

        async def load(method: str) -> tuple[float, float, float]:
            """(tool call wall time, retrieve+verify, decode) of one load_series; the scene is cleared after."""
            async with Client(server) as client:
                t0 = time.perf_counter()
                result = await client.call_tool(
                    "load_series",
                    {
                        "series_instance_uid": spec.series_uid,
                        "study_instance_uid": spec.study_uid,
                        "method": method,
                    },
                )
                elapsed = time.perf_counter() - t0
            assert not result.is_error, result.content[0].text
            scene.gateway.call(lambda: data_io.clear_data(backend.scene), 60)
            data = result.structured_content
            return elapsed, data["retrieve_seconds"], data["load_seconds"]

        for method in ("c-get", "c-move", "dicomweb"):
            total, fetch_s, decode_s = min(asyncio.run(load(method)) for _ in range(runs))
            rows.append((f"load_series (retrieve + load into scene), {method}", total))
            notes.append(
                f"load_series by {method} (best run): retrieve+verify {fetch_s:.2f} s, decode {decode_s:.2f} s, "
                f"volume node + MCP {total - fetch_s - decode_s:.2f} s"
            )
        decoded = services.get_or_create("dicom", lambda s: DicomService(s.config)).retrieve_and_decode(
            target
        )[1]
        volume = decoded[0].loaded.volume

        def add_only() -> None:
            asyncio.run(backend.add_volume(volume))
            scene.gateway.call(lambda: data_io.clear_data(backend.scene), 60)

        notes.append(
            f"backend.add_volume of the decoded volume alone (scene code): {best(add_only, runs):.2f} s"
        )
        asyncio.run(services.close())

        print(f"\nbest of {runs} runs, {slices} slices 512x512 int16\n")
        print("| what | time | ratio to getscu |\n| --- | --- | --- |")
        for name, seconds in rows:
            print(f"| {name} | {seconds:.2f} s | {seconds / reference:.2f}x |")
        print()
        for note in notes:
            print(note)
    finally:
        scene.stop()
        stop_orthanc(orthanc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
