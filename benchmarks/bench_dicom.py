"""DICOM retrieve + load of a 300-slice 512x512 CT from Orthanc, against dcmtk getscu in the same run.

Starts Orthanc as Testing/fixtures/orthanc.py does (a real process, TCP_NODELAY=1, as for the
dcmtk tools), uploads a synthetic CT, then runs N rounds; each round times, one after the other
(so load drift on a shared machine hits all alike):
  reference: dcmtk `getscu` C-GET of the series to disk
  load_series through `slicer-mcp serve --backend headless` (its own process and scene) with the
              MCP SDK's stdio client, as a user's agent calls it, by DICOMweb, C-GET and C-MOVE
  load_series in this process (in-memory client) with its phases timed: expected-instance
              query, transfer, assembly, scene add
Prints medians over the rounds, each round's ratio to that round's getscu, and the phases.
Run: python benchmarks/bench_dicom.py [ROUNDS] [SLICES] [gradient16|ct12]
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

from mcp import Client  # noqa: E402

from fixtures.bridge import bridge_client, bridge_env  # noqa: E402
from fixtures.core import free_port  # noqa: E402
from fixtures.orthanc import (  # noqa: E402
    DCMTK_AET,
    OUR_AET,
    make_ct_series,
    orthanc_config,
    start_orthanc,
    stop_orthanc,
)
from SlicerMCPLib.core.gateway import SceneThread  # noqa: E402
from SlicerMCPLib.core.log_levels import cap_third_party_loggers  # noqa: E402
from SlicerMCPLib.core.services import Services  # noqa: E402
from SlicerMCPLib.dicom import retrieve as retrieve_module  # noqa: E402
from SlicerMCPLib.dicom import service as service_module  # noqa: E402

try:  # absent before the incremental loader: the benchmark then runs without the assembly phase
    from SlicerMCPLib.dicom.loader import SeriesCollector  # noqa: E402
except ImportError:  # pragma: no cover
    SeriesCollector = None  # type: ignore[assignment,misc]
from SlicerMCPLib.hosts.headless import create_headless_backend  # noqa: E402
from SlicerMCPLib.serving.server import build_server  # noqa: E402

METHODS = ("dicomweb", "c-get", "c-move")
KINDS = {
    # the test fixture's gradient: every voxel tells where it is; past slice ~200 the int16 values
    # wrap, so with the -1024 intercept the volume needs int32
    "gradient16": "16-bit signed gradient (int32 volume)",
    # what CT scanners write: 12 bits stored in 16, intercept -1024: the volume is int16
    "ct12": "12-bit stored CT (int16 volume)",
}


class Phases:
    """Seconds spent in each phase of one in-process load (wrapping the functions that do them)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def wrap(self, owner: Any, name: str, phase: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.spent[phase] = self.spent.get(phase, 0.0) + time.perf_counter() - t0

        setattr(owner, name, timed)

    def seconds(self, phase: str) -> float:
        return self.spent.get(phase, 0.0)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    slices = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    kind = sys.argv[3] if len(sys.argv) > 3 else "gradient16"
    if kind not in KINDS:
        raise SystemExit(f"series kind: one of {', '.join(KINDS)}")
    # as the slicer-mcp process does: the in-process server must not log each C-FIND answer and
    # sub-operation at INFO (the SDK's rich console handler made the in-process loads 5-10x slower)
    cap_third_party_loggers()
    work = Path(tempfile.mkdtemp(prefix="bench-dicom-"))
    orthanc = start_orthanc(work)
    scene = SceneThread().start()
    try:
        spec, datasets = make_ct_series(slices=slices, rows=512, columns=512, shuffle=False)
        if kind == "ct12":
            for ds in datasets:  # as CT scanners store it: 12 bits in 16, unsigned, intercept -1024
                values = np.frombuffer(ds.PixelData, dtype="<i2").view("<u2") & 0x0FFF
                ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
                ds.PixelData = values.tobytes()
        t0 = time.perf_counter()
        orthanc.upload(datasets)
        size_mb = sum(len(d.PixelData) for d in datasets) / 1e6
        print(
            f"uploaded {slices} x 512x512 CT ({size_mb:.0f} MB pixel data) in {time.perf_counter() - t0:.1f} s"
        )
        del datasets
        args = {"series_instance_uid": spec.series_uid, "study_instance_uid": spec.study_uid}

        def getscu() -> float:
            out = work / "getscu"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            t0 = time.perf_counter()
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
            elapsed = time.perf_counter() - t0
            assert len(list(out.iterdir())) == slices
            return elapsed

        # slicer-mcp as its own process, configured for this Orthanc (the config a user would write);
        # the in-process server gets a C-MOVE destination of its own (both Storage SCPs stay up)
        second_port = free_port()
        requests.put(
            f"{orthanc.url}/modalities/BENCHLOCAL",
            json={"AET": "BENCHLOCAL", "Host": "127.0.0.1", "Port": second_port},
            timeout=10,
        ).raise_for_status()
        config = orthanc_config(orthanc, storage_scp={"ae_title": "BENCHLOCAL", "port": second_port})
        config_path = work / "slicer-mcp.yaml"
        config_path.write_text(
            yaml.safe_dump(
                {
                    "nodes": {
                        "orthanc": orthanc.node_config(dicomweb_url=orthanc.dicomweb_url),
                        "dcmtk": {"host": "127.0.0.1", "port": orthanc.dcmtk_port, "ae_title": DCMTK_AET},
                    },
                    "current_node": "orthanc",
                    "calling_aet": OUR_AET,
                    "storage_scp": {"ae_title": OUR_AET, "port": orthanc.scp_port},
                }
            )
        )
        env = bridge_env(SLICER_MCP_HOME=str(work / "home"), TCP_NODELAY="1")

        backend = scene.gateway.call(lambda: create_headless_backend(scene.gateway, config), 120)
        services = Services(config=config, backend=backend)
        server = build_server(services)

        async def call_load(client: Any, method: str) -> tuple[float, dict[str, Any]]:
            t0 = time.perf_counter()
            result = await client.call_tool("load_series", {**args, "method": method})
            elapsed = time.perf_counter() - t0
            assert not result.is_error, result.content[0].text
            data = result.structured_content
            assert data["loaded"][0]["slices"] == slices
            await client.call_tool("clear_scene", {})
            return elapsed, data

        times: dict[str, list[float]] = {"getscu": []}
        ratios: dict[str, list[float]] = {}
        phases: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}

        async def run() -> None:
            async with bridge_client(
                ["--config", str(config_path), "serve", "--backend", "headless"], env
            ) as remote:
                async with Client(server) as local:
                    for method in METHODS:  # warm-up: imports, first association, caches
                        await call_load(remote, method)
                        await call_load(local, method)
                    for _ in range(rounds):
                        reference = getscu()
                        times["getscu"].append(reference)
                        for method in METHODS:
                            elapsed, _ = await call_load(remote, method)
                            times.setdefault(f"slicer-mcp {method}", []).append(elapsed)
                            ratios.setdefault(f"slicer-mcp {method}", []).append(elapsed / reference)
                            probe = Phases()
                            restore = _instrument(probe, backend)
                            try:
                                elapsed, data = await call_load(local, method)
                            finally:
                                restore()
                            times.setdefault(f"in-process {method}", []).append(elapsed)
                            ratios.setdefault(f"in-process {method}", []).append(elapsed / reference)
                            phases[method].append(
                                {
                                    "total": elapsed,
                                    "query": probe.seconds("query"),
                                    "transfer": probe.seconds("transfer"),
                                    "assembly": probe.seconds("assembly"),
                                    "scene": probe.seconds("scene"),
                                    "retrieve": data["retrieve_seconds"],
                                }
                            )

        asyncio.run(run())
        asyncio.run(services.close())

        print(
            f"\n{rounds} rounds, {slices} slices 512x512, {KINDS[kind]}; medians; ratio = median of per-round ratios\n"
        )
        print("| what | median time | ratio to getscu |\n| --- | --- | --- |")
        print(
            f"| reference: dcmtk getscu (C-GET to disk) | {statistics.median(times['getscu']):.2f} s | 1.00x |"
        )
        for name in ratios:
            label = f"load_series through {name}" if name.startswith("slicer-mcp") else f"load_series {name}"
            print(
                f"| {label} | {statistics.median(times[name]):.2f} s | {statistics.median(ratios[name]):.2f}x |"
            )
        print("\nphases of the in-process loads (median seconds; query and transfer overlap):\n")
        keys = ("total", "query", "transfer", "assembly", "scene", "retrieve")
        print("| method | " + " | ".join(keys) + " |\n| --- |" + " --- |" * len(keys))
        for method, runs in phases.items():
            print(
                f"| {method} | "
                + " | ".join(f"{statistics.median(r[k] for r in runs):.2f}" for k in keys)
                + " |"
            )
    finally:
        scene.stop()
        stop_orthanc(orthanc)
        shutil.rmtree(work, ignore_errors=True)


def _instrument(probe: Phases, backend: Any) -> Callable[[], None]:
    """Time the phases of the next load by wrapping the functions that do them; returns the undo."""
    targets = [
        (service_module, "expected_instances", "query"),
        (retrieve_module, "_dicomweb", "transfer"),
        (retrieve_module, "_c_get", "transfer"),
        (retrieve_module, "move", "transfer"),
        (backend, "add_volume", "scene"),
    ]
    if SeriesCollector is not None:
        targets += [(SeriesCollector, "build_ahead", "assembly"), (SeriesCollector, "build", "assembly")]
    if hasattr(service_module, "load_series"):  # the loader before it read instances as they arrive
        targets.append((service_module, "load_series", "assembly"))
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in targets]
    for owner, name, phase in targets:
        if name == "add_volume":
            original = owner.add_volume

            async def timed(volume: Any, _original: Any = original) -> Any:
                t0 = time.perf_counter()
                try:
                    return await _original(volume)
                finally:
                    probe.spent["scene"] = time.perf_counter() - t0

            owner.add_volume = timed
        else:
            probe.wrap(owner, name, phase)

    def restore() -> None:
        for owner, name, original in saved:
            if isinstance(owner, type) or owner in (service_module, retrieve_module):
                setattr(owner, name, original)
            else:
                owner.__dict__.pop(name, None)

    return restore


if __name__ == "__main__":
    main()
