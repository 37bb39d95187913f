"""Soak: `slicer-mcp serve` and `slicer-mcp ris serve` under mixed load, with peers restarted and bad input fed.

    .venv/bin/python benchmarks/bench_soak.py --minutes 30 [--profile all|services] [--fault-every 60]

Started as a user starts them, on real peers started as the tests start them (Testing/fixtures):
Orthanc (a small CT series, plus one whose stored file is truncated), MariaDB (the RIS database both
processes share), sekmet-fhir (seeded), `slicer-mcp ris serve` (MWL/MPPS SCP + REST API) and
`slicer-mcp serve --headless --demo --transport http` (benchmarks/_server.py). For the whole run:
- 4 MCP clients (the SDK's streamable HTTP client, one kept-alive connection each) in a random
  mix: list_scene_nodes, capture_screenshot, measure_volume, query_studies, load_series (the node
  removed again with execute_python), retrieve_series, fhir_search_patient, list_worklist, and
  create_order + create_mwl_from_order for the client's own modality. `services` (issue 16) keeps
  the FHIR and RIS calls only.
- 4 modalities (pynetdicom, one association per query, 4 at a time): MWL C-FIND for their station,
  then MPPS N-CREATE IN PROGRESS and N-SET COMPLETED for each SCHEDULED entry they find.
- 1 REST scheduler: POST /ris/api/worklist for an ORDERED order, then DELETE it (cancel); every
  third one is left for a modality to perform.
- Faults, one every --fault-every s in turn: restart Orthanc, restart MariaDB, restart sekmet, drop
  client connections mid-call (and half-sent requests, silent connections to the MWL port), feed bad
  files (truncated NRRD, a .nhdr naming /etc/passwd, the series with a truncated instance).
Every 10 s the RSS and open descriptors of both server processes are sampled; a server that exits is
a crash. At the end every acknowledged write (orders, worklist entries, cancels, MPPS COMPLETED) is
looked up in MariaDB. Errors are counted by code and by whether a fault window (fault + breaker
cool-down) covers them; INTERNAL_ERROR or an uncoded failure is a finding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import Connection, SlicerMcpProcess  # noqa: E402

from fixtures.fhir import start_sekmet, stop_sekmet  # noqa: E402
from fixtures.mariadb import restart_mariadb, start_mariadb, stop_mariadb  # noqa: E402
from fixtures.orthanc import OUR_AET, make_ct_series, restart_orthanc, start_orthanc, stop_orthanc  # noqa: E402
from fixtures.ris import RIS_AET, start_ris_serve  # noqa: E402
from SlicerMCPLib.core.domain_config import FhirServer, MiniRisSettings  # noqa: E402
from SlicerMCPLib.core.errors import SlicerMCPError  # noqa: E402
from SlicerMCPLib.fhir.client import FhirClient  # noqa: E402
from SlicerMCPLib.fhir.seed import seed as seed_fhir  # noqa: E402
from SlicerMCPLib.ris.store import RisStore  # noqa: E402

CLIENTS = 4
STATIONS = [f"SOAK{i}" for i in range(1, CLIENTS + 1)]
FAMILIES = ["Anderson", "Okafor", "Smith", "Nguyen", "Zz-nobody"]
MRNS = [f"MRN10{n:02d}" for n in range(1, 13)]
CANCEL_STATION = "SOAKCR"
GRACE_S = 40.0  # after a fault: the breaker's 30 s cool-down plus a retry
MCP_MIX = {
    "list_scene_nodes": 4,
    "capture_screenshot": 3,
    "measure_volume": 2,
    "execute_python": 1,
    "query_studies": 2,
    "load_series": 1,
    "retrieve_series": 1,
    "fhir_search_patient": 3,
    "list_worklist": 2,
    "schedule_order": 2,
}
SERVICES_MIX = {"fhir_search_patient": 3, "list_worklist": 2, "schedule_order": 3}
FAULTS = ["restart_orthanc", "drop_connections", "restart_mariadb", "bad_files", "restart_fhir"]
SERVICES_FAULTS = ["restart_mariadb", "restart_fhir", "silent_mwl_connections"]


class Coded(Exception):
    def __init__(self, code: str, message: str = ""):
        super().__init__(f"{code}: {message[:300]}")
        self.code = code


@dataclass
class Soak:
    """Shared state: counts, acknowledged writes, fault windows."""

    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[tuple[float, str, str, str]] = field(default_factory=list)  # t, op, code, text
    faults: list[tuple[str, float, float, str]] = field(default_factory=list)  # name, start, end, note
    orders: list[tuple[int, str]] = field(default_factory=list)
    scheduled: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    completed_mpps: list[str] = field(default_factory=list)
    refused: list[tuple[float, str]] = field(default_factory=list)
    samples: dict[str, list[tuple[float, int, int]]] = field(default_factory=lambda: defaultdict(list))
    crashed: str = ""
    stop: threading.Event = field(default_factory=threading.Event)

    def now(self) -> float:
        return time.monotonic() - self.started

    def record(self, op: str, outcome: str, ms: float | None = None, text: str = "") -> None:
        with self.lock:
            self.calls[op, outcome] += 1
            if ms is not None and outcome == "ok":
                self.latency[op].append(ms)
            if outcome != "ok":
                self.errors.append((self.now(), op, outcome, text[:300]))

    def in_fault(self, t: float) -> bool:
        return any(start <= t <= end + GRACE_S for _, start, end, _ in self.faults)


def error_code(result: Any) -> tuple[str, str]:
    """The code of a failed tool call's JSON error body; UNCODED when the text isn't one."""
    text = result.content[0].text if result.content else ""
    try:
        return str(json.loads(text)["error"]["code"]), text
    except (ValueError, KeyError, TypeError):
        return "UNCODED", text


# --- MCP clients -------------------------------------------------------------------------------


@dataclass
class Targets:
    """What the clients call on: the demo segmentation, the Orthanc series, the bad files."""

    segmentation: str
    patient_id: str
    series_uid: str
    study_uid: str
    bad_series_uid: str
    bad_study_uid: str
    bad_nrrd: Path
    passwd_nhdr: Path


async def tool(conn: Connection, name: str, args: dict[str, Any]) -> Any:
    result = await conn.client.call_tool(name, args)
    if result.is_error:
        raise Coded(*error_code(result))
    return result.structured_content


async def mcp_op(conn: Connection, op: str, n: int, t: Targets, soak: Soak) -> None:
    if op == "list_scene_nodes":
        await tool(conn, op, {"limit": 50})
    elif op == "capture_screenshot":
        await tool(conn, op, {"view_type": random.choice(["axial", "coronal", "3d"]), "size": 256})
    elif op == "measure_volume":
        await tool(conn, op, {"node_id": t.segmentation})
    elif op == "execute_python":
        await tool(conn, op, {"code": "import numpy as _np\nint(_np.arange(1000).sum())"})
    elif op == "query_studies":
        await tool(conn, op, {"patient_id": t.patient_id})
    elif op == "load_series":
        loaded = await tool(
            conn, op, {"series_instance_uid": t.series_uid, "study_instance_uid": t.study_uid}
        )
        ids = [s["node"]["id"] for s in loaded["loaded"]]
        await tool(conn, "execute_python", {"code": _remove_nodes(ids)})  # keep the scene the same size
    elif op == "retrieve_series":
        await tool(
            conn,
            op,
            {"series_instance_uid": t.series_uid, "study_instance_uid": t.study_uid, "method": "c-get"},
        )
    elif op == "fhir_search_patient":
        await tool(conn, op, {"family": random.choice(FAMILIES), "limit": 10})
    elif op == "list_worklist":
        await tool(conn, op, {"station_aet": STATIONS[n], "status": "SCHEDULED", "limit": 50})
    elif op == "schedule_order":
        order = await tool(
            conn, "create_order", {"patient_mrn": random.choice(MRNS), "procedure_code": "XR-CHEST-2V"}
        )
        with soak.lock:
            soak.orders.append((order["id"], order["accession_number"]))
        entry = await tool(
            conn, "create_mwl_from_order", {"order_id": order["id"], "scheduled_station_aet": STATIONS[n]}
        )
        with soak.lock:
            soak.scheduled.append(entry["mwl_id"])


def _remove_nodes(ids: list[str]) -> str:
    return f"for _id in {ids!r}:\n    mrmlScene.RemoveNode(mrmlScene.GetNodeByID(_id))\nlen({ids!r})"


async def mcp_client(n: int, url: str, token: str, mix: dict[str, int], t: Targets, soak: Soak) -> None:
    """One client: calls in a random mix on one kept-alive connection; reconnects if the link breaks."""
    ops, weights = list(mix), list(mix.values())
    while not soak.stop.is_set():
        try:
            async with Connection(url, token) as conn:
                while not soak.stop.is_set():
                    op = random.choices(ops, weights)[0]
                    t0 = time.perf_counter()
                    try:
                        await mcp_op(conn, op, n, t, soak)
                        soak.record(op, "ok", (time.perf_counter() - t0) * 1000)
                    except Coded as exc:
                        soak.record(op, exc.code, text=str(exc))
                    await asyncio.sleep(random.uniform(0.05, 0.3))
        except Exception as exc:  # the link broke (or the server died): count it and reconnect
            soak.record("mcp_connection", f"EXC {type(exc).__name__}", text=repr(exc))
            await asyncio.sleep(1)


# --- modalities and the REST scheduler (threads) ----------------------------------------------


def worklist_query(station: str) -> Dataset:
    query = Dataset()
    for kw in ("PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID"):
        setattr(query, kw, "")
    sps = Dataset()
    sps.ScheduledStationAETitle = station
    for kw in ("ScheduledProcedureStepStartDate", "ScheduledProcedureStepID", "Modality"):
        setattr(sps, kw, "")
    sps.ScheduledProcedureStepStatus = ""
    query.ScheduledProcedureStepSequence = Sequence([sps])
    return query


def associate(ae: AE, port: int, what: str, soak: Soak) -> Any:
    assoc = ae.associate("127.0.0.1", port, ae_title=RIS_AET)
    if not assoc.is_established:
        with soak.lock:
            soak.refused.append(
                (soak.now(), f"{what} {'rejected' if assoc.is_rejected else 'aborted/no answer'}")
            )
        time.sleep(0.5)
        return None
    return assoc


def perform(ae: AE, port: int, entry: Dataset, soak: Soak) -> None:
    """MPPS IN PROGRESS then COMPLETED for one worklist entry, as the modality that did it."""
    assoc = associate(ae, port, "mpps", soak)
    if assoc is None:
        return
    sps = entry.ScheduledProcedureStepSequence[0]
    uid = generate_uid()
    ds = Dataset()
    item = Dataset()
    item.StudyInstanceUID = entry.StudyInstanceUID
    item.AccessionNumber = entry.AccessionNumber
    item.ScheduledProcedureStepID = sps.ScheduledProcedureStepID
    ds.ScheduledStepAttributesSequence = Sequence([item])
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = sps.Modality
    try:
        status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
        code = int(status.Status) if status else -1
        soak.record("mpps_in_progress", "ok" if code == 0 else f"0x{code & 0xFFFF:04X}")
        if code != 0:
            return
        done = Dataset()  # what a COMPLETED step must carry
        done.PerformedProcedureStepStatus = "COMPLETED"
        done.PerformedProcedureStepEndDate = time.strftime("%Y%m%d")
        done.PerformedProcedureStepEndTime = time.strftime("%H%M%S")
        image = Dataset()
        image.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
        image.ReferencedSOPInstanceUID = generate_uid()
        series = Dataset()
        series.SeriesInstanceUID = generate_uid()
        series.ProtocolName = "soak"
        series.ReferencedImageSequence = Sequence([image])
        done.PerformedSeriesSequence = Sequence([series])
        for _ in range(30):  # a modality retries the N-SET until the RIS takes it (database restart)
            status, _ = (
                assoc.send_n_set(done, ModalityPerformedProcedureStep, uid)
                if assoc.is_established
                else (None, None)
            )
            code = int(status.Status) if status else -1
            soak.record("mpps_completed", "ok" if code == 0 else f"0x{code & 0xFFFF:04X}")
            if code == 0:
                with soak.lock:
                    soak.completed_mpps.append(uid)
                return
            if not assoc.is_established:
                assoc = associate(ae, port, "mpps", soak)
                if assoc is None:
                    continue
            time.sleep(1)
    finally:
        if assoc is not None and assoc.is_established:
            assoc.release()


def modality(station: str, port: int, soak: Soak) -> None:
    ae = AE(ae_title=station)
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    query = worklist_query(station)
    while not soak.stop.is_set():
        assoc = associate(ae, port, "mwl", soak)
        if assoc is None:
            continue
        todo, statuses = [], []
        t0 = time.perf_counter()
        for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
            if not status:
                continue
            statuses.append(int(status.Status))
            if identifier is not None and int(status.Status) in (0xFF00, 0xFF01):
                if identifier.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == "SCHEDULED":
                    todo.append(identifier)
        assoc.release()
        final = statuses[-1] if statuses else -1
        soak.record(
            "mwl_c_find", "ok" if final == 0 else f"0x{final & 0xFFFF:04X}", (time.perf_counter() - t0) * 1000
        )
        for entry in todo[:2]:
            perform(ae, port, entry, soak)
        time.sleep(random.uniform(0.2, 0.5))


def rest_scheduler(api: str, token: str, soak: Soak) -> None:
    client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    k = 0
    while not soak.stop.is_set():
        time.sleep(random.uniform(0.2, 0.5))
        try:
            r = client.get(f"{api}/ris/api/orders", params={"status": "ORDERED", "limit": "20"})
            if r.status_code != 200:
                soak.record("rest_orders", _rest_code(r), text=r.text)
                continue
            orders = r.json()["orders"]
            if not orders:
                continue
            k += 1
            keep = k % 3 == 0  # left on a modality's worklist, else cancelled straight away
            station = STATIONS[k % CLIENTS] if keep else CANCEL_STATION
            when = (datetime.now() + timedelta(minutes=5)).isoformat(timespec="minutes")
            r = client.post(
                f"{api}/ris/api/worklist",
                json={
                    "order_id": random.choice(orders)["id"],
                    "scheduled_station_aet": station,
                    "scheduled_time": when,
                },
            )
            soak.record("rest_schedule", "ok" if r.status_code == 201 else _rest_code(r), text=r.text)
            if r.status_code != 201:
                continue
            mwl_id = r.json()["mwl_id"]
            with soak.lock:
                soak.scheduled.append(mwl_id)
            if keep:
                continue
            d = client.delete(f"{api}/ris/api/worklist/{mwl_id}")
            soak.record("rest_cancel", "ok" if d.status_code == 200 else _rest_code(d), text=d.text)
            if d.status_code == 200:
                with soak.lock:
                    soak.cancelled.append(mwl_id)
        except httpx.HTTPError as exc:
            soak.record("rest", f"EXC {type(exc).__name__}", text=repr(exc))


def _rest_code(r: httpx.Response) -> str:
    try:
        return f"{r.status_code} {r.json()['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return f"{r.status_code} UNCODED"


# --- faults ------------------------------------------------------------------------------------


class Peers:
    """The real peers, restartable on the same ports and data."""

    def __init__(self, work: Path):
        self.work = work
        self.orthanc = start_orthanc(self._dir("orthanc"))
        self.mariadb = start_mariadb(self._dir("mariadb"))
        self.fhir = start_sekmet(self._dir("sekmet"))

    def _dir(self, name: str) -> Path:
        (self.work / name).mkdir(exist_ok=True)
        return self.work / name

    def restart(self, which: str) -> None:
        if which == "restart_orthanc":
            self.orthanc = restart_orthanc(self.orthanc)
        elif which == "restart_mariadb":
            self.mariadb = restart_mariadb(self.mariadb)
        elif which == "restart_fhir":
            port = int(self.fhir.base_url.split(":")[2].split("/")[0])
            stop_sekmet(self.fhir)
            self.fhir = start_sekmet(self.work / "sekmet", port=port)

    def stop(self) -> None:
        stop_orthanc(self.orthanc)
        stop_mariadb(self.mariadb)
        stop_sekmet(self.fhir)


async def drop_connections(url: str, token: str, t: Targets, mwl_port: int, soak: Soak) -> str:
    """Clients that go away mid-call, half-sent requests, and silent TCP connections to both servers."""
    dropped = 0
    calls = [
        ("load_series", {"series_instance_uid": t.series_uid, "study_instance_uid": t.study_uid}),
        ("capture_screenshot", {"view_type": "3d", "size": 1024}),
        ("execute_python", {"code": "import time\ntime.sleep(1.5)\n1"}),
        ("fhir_search_patient", {"family": "Smith"}),
    ]
    for name, args in calls:
        async with Connection(url, token) as conn:
            try:
                await conn.raw("tools/call", {"name": name, "arguments": args}, timeout=0.15)
            except (httpx.TimeoutException, RuntimeError):
                dropped += 1
    host, port = url.split("//")[1].split("/")[0].split(":")
    for _ in range(5):  # a POST whose body never fully arrives, then gone
        with socket.create_connection((host, int(port))) as s:
            s.sendall(
                f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                'Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{"jsonrpc"'.encode()
            )
            await asyncio.sleep(0.2)
    return f"{dropped} calls dropped mid-call, 5 half-sent requests; " + await silent_connections(mwl_port)


async def silent_connections(mwl_port: int) -> str:
    """Ten TCP connections to the MWL port that say nothing for 2 s, then close (issue 16 item 2)."""
    socks = [socket.create_connection(("127.0.0.1", mwl_port)) for _ in range(10)]
    await asyncio.sleep(2)
    for s in socks:
        s.close()
    return "10 silent MWL connections"


async def bad_files(conn: Connection, t: Targets, soak: Soak) -> str:
    """Loads that must fail with a coded error and leave the server as it was."""
    got = []
    for op, name, args in [
        ("bad_nrrd", "load_volume", {"path": str(t.bad_nrrd)}),
        ("bad_nhdr_passwd", "load_volume", {"path": str(t.passwd_nhdr)}),
        (
            "bad_dicom_series",
            "load_series",
            {"series_instance_uid": t.bad_series_uid, "study_instance_uid": t.bad_study_uid},
        ),
    ]:
        try:
            await tool(conn, name, args)
            soak.record(op, "LOADED (should have failed)")
            got.append(f"{op}: loaded")
        except Coded as exc:
            soak.record(op, exc.code, text=str(exc))
            got.append(f"{op}: {exc.code}")
    return ", ".join(got)


async def fault_loop(
    faults: list[str], every: float, peers: Peers, url: str, token: str, t: Targets, mwl_port: int, soak: Soak
) -> None:
    k = 0
    await asyncio.sleep(every / 2)
    async with Connection(url, token) as conn:
        while not soak.stop.is_set():
            name = faults[k % len(faults)]
            k += 1
            start = soak.now()
            try:
                if name.startswith("restart_"):
                    await asyncio.to_thread(peers.restart, name)
                    note = "restarted"
                elif name == "drop_connections":
                    note = await drop_connections(url, token, t, mwl_port, soak)
                elif name == "silent_mwl_connections":
                    note = await silent_connections(mwl_port)
                else:
                    note = await bad_files(conn, t, soak)
            except BaseException as exc:  # noqa: BLE001 - the soak goes on and reports it
                note = f"fault failed: {exc!r}"
            with soak.lock:
                soak.faults.append((name, start, soak.now(), note))
            print(f"[{soak.now() / 60:5.1f} min] {name}: {note}", file=sys.stderr, flush=True)
            deadline = time.monotonic() + every
            while time.monotonic() < deadline and not soak.stop.is_set():
                await asyncio.sleep(0.5)


# --- set-up, sampling, verdict -----------------------------------------------------------------


def proc_stats(pid: int) -> tuple[int, int]:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def sampler(procs: dict[str, Any], soak: Soak) -> None:
    while not soak.stop.is_set():
        for name, proc in procs.items():
            if proc.poll() is not None:
                soak.crashed = f"{name} exited with {proc.returncode} at {soak.now() / 60:.1f} min"
                soak.stop.set()
                return
            soak.samples[name].append((soak.now(), *proc_stats(proc.pid)))
        soak.stop.wait(10)


def make_bad_files(folder: Path) -> tuple[Path, Path]:
    nrrd = folder / "truncated.nrrd"
    header = "NRRD0004\ntype: short\ndimension: 3\nsizes: 64 64 64\nencoding: raw\nendian: little\n\n"
    nrrd.write_bytes(header.encode() + b"\0" * 5000)  # 5 kB of the 512 kB it declares
    nhdr = folder / "passwd.nhdr"
    nhdr.write_text(
        "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 8 8 8\nencoding: raw\ndata file: /etc/passwd\n\n"
    )
    return nrrd, nhdr


def write_configs(work: Path, peers: Peers, ris_block: dict[str, Any]) -> tuple[Path, Path]:
    o = peers.orthanc
    ris = work / "ris.yaml"
    ris.write_text(yaml.safe_dump({"allow": {"ris_write": True}, "mini_ris": ris_block}))
    serve = work / "serve.yaml"
    node = o.node_config(dicomweb_url=o.dicomweb_url)
    serve.write_text(
        yaml.safe_dump(
            {
                "nodes": {"orthanc": node},
                "current_node": "orthanc",
                "calling_aet": OUR_AET,
                "storage_scp": {"ae_title": OUR_AET, "port": o.scp_port},
                "fhir_servers": {"soak": peers.fhir.server_config(timeout_s=10)},
                "current_fhir": "soak",
                "mini_ris": ris_block,
                "allow": {"ris_write": True, "execute_python": True},
            }
        )
    )
    return ris, serve


def window_mean(samples: list[tuple[float, int, int]], lo: float, hi: float, i: int) -> float:
    picked = [s[i] for s in samples if lo <= s[0] <= hi] or [samples[0][i]]
    return statistics.mean(picked)


def slope_per_min(samples: list[tuple[float, int, int]], i: int, after: float) -> float:
    pts = [(s[0] / 60, s[i]) for s in samples if s[0] >= after]
    if len(pts) < 3:
        return 0.0
    return statistics.linear_regression([p[0] for p in pts], [p[1] for p in pts]).slope


def verify_writes(ris_block: dict[str, Any], soak: Soak) -> dict[str, int]:
    store = RisStore.open(MiniRisSettings(**ris_block))
    lost: Counter[str] = Counter()
    try:
        for order_id, accession in soak.orders:
            if store.get_order(order_id).accession_number != accession:
                lost["orders"] += 1
        for mwl_id in soak.scheduled:
            store.get_mwl(mwl_id)  # RIS_NOT_FOUND would raise: a lost entry
        for mwl_id in soak.cancelled:
            lost["cancels"] += store.get_mwl(mwl_id).status != "CANCELLED"
        for uid in soak.completed_mpps:
            lost["mpps"] += store.get_mpps(uid).status != "COMPLETED"
    except SlicerMCPError as exc:
        lost[f"missing ({exc.code})"] += 1
    finally:
        store.close()
    return dict(lost)


def report(args: argparse.Namespace, soak: Soak, lost: dict[str, int], elapsed: float) -> bool:
    print(
        f"\nsoak profile {args.profile}: {elapsed / 60:.1f} min, {len(soak.faults)} faults, started {args.date}"
    )
    for name, start, end, note in soak.faults:
        print(f"  fault {start / 60:5.1f} min {name:<22} {end - start:5.1f} s  {note}")
    print("calls (ok / errors by code; p50 of ok calls):")
    ops = sorted({op for op, _ in soak.calls})
    for op in ops:
        ok = soak.calls[op, "ok"]
        bad = {code: n for (o, code), n in soak.calls.items() if o == op and code != "ok"}
        p50 = f"{statistics.median(soak.latency[op]):8.1f} ms" if soak.latency[op] else " " * 11
        print(f"  {op:<22} {ok:7d} ok {p50}  {', '.join(f'{c} {n}' for c, n in sorted(bad.items()))}")
    outside = [e for e in soak.errors if not soak.in_fault(e[0]) and not e[1].startswith("bad_")]
    internal = [e for e in soak.errors if "INTERNAL_ERROR" in e[2] or "UNCODED" in e[2]]
    bad_loaded = [e for e in soak.errors if "LOADED" in e[2]]
    total = sum(soak.calls.values())
    print(
        f"errors: {len(soak.errors)} of {total} calls ({len(soak.errors) / max(total, 1):.2%}); "
        f"outside fault windows (+{GRACE_S:.0f} s): {len(outside)}"
    )
    for t, op, code, text in outside[:15]:
        print(f"    {t / 60:5.1f} min {op} {code} {text[:160]}")
    print(f"INTERNAL_ERROR / uncoded: {len(internal)}")
    for t, op, code, text in internal[:10]:
        print(f"    {t / 60:5.1f} min {op} {code} {text[:200]}")
    print(f"refused associations: {len(soak.refused)} (limit 64; 4 modalities + 10 silent at most at once)")
    for t, what in soak.refused[:10]:
        print(f"    {t / 60:5.1f} min {what}  {'(fault window)' if soak.in_fault(t) else ''}")
    acked = len(soak.orders) + len(soak.scheduled) + len(soak.cancelled) + len(soak.completed_mpps)
    print(
        f"acknowledged writes: {len(soak.orders)} orders, {len(soak.scheduled)} worklist entries, "
        f"{len(soak.cancelled)} cancels, {len(soak.completed_mpps)} MPPS COMPLETED = {acked}; lost: {lost or 0}"
    )
    window = min(300.0, elapsed / 5)
    print(
        f"memory and descriptors (mean of the first vs last {window / 60:.1f} min; slope after the first window):"
    )
    flat = True
    for name, samples in soak.samples.items():
        rss0, rss1 = window_mean(samples, 0, window, 1), window_mean(samples, elapsed - window, elapsed, 1)
        fd0, fd1 = window_mean(samples, 0, window, 2), window_mean(samples, elapsed - window, elapsed, 2)
        print(
            f"  {name:<6} RSS {rss0 / 1024:7.1f} -> {rss1 / 1024:7.1f} MiB ({rss1 / rss0:.3f}x, "
            f"{slope_per_min(samples, 1, window) / 1024:+.2f} MiB/min); "
            f"fds {fd0:.1f} -> {fd1:.1f} ({slope_per_min(samples, 2, window):+.2f}/min); "
            f"max RSS {max(s[1] for s in samples) / 1024:.1f} MiB, max fds {max(s[2] for s in samples)}"
        )
        flat = flat and rss1 / rss0 <= 1.10 and fd1 - fd0 <= 5
    ok = not soak.crashed and not internal and not lost and not bad_loaded and flat
    print(f"crash: {soak.crashed or 'none'}")
    print(
        f"verdict: {'PASS' if ok else 'FAIL'} (no crash, no INTERNAL_ERROR/uncoded, no lost write, "
        "no bad file loaded, RSS within 1.10x and fds within +5 first vs last window)"
    )
    return ok


async def run(args: argparse.Namespace) -> bool:
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    peers = Peers(work)
    ris_block = {**peers.mariadb.create_database(), "mwl_port": 0, "api_port": 0}
    spec, series = make_ct_series(slices=12)
    bad_spec, bad_series = make_ct_series(slices=6)
    peers.orthanc.upload(series + bad_series)
    peers.orthanc.truncate_file(bad_series[0].SOPInstanceUID)
    seed_fhir(FhirClient("seed", FhirServer(**peers.fhir.server_config())))
    nrrd, nhdr = make_bad_files(work)
    ris_config, serve_config = write_configs(work, peers, ris_block)
    (work / "ris-home").mkdir()
    ris_proc, mwl_port, api_port, _ = start_ris_serve(ris_config, work / "ris-home")
    ris_token = (work / "ris-home" / "token").read_text().strip()
    soak = Soak()
    try:
        with SlicerMcpProcess("--demo", env={"SLICER_MCP_CONFIG": str(serve_config)}) as server:
            async with Connection(server.url, server.token) as conn:
                segs = await tool(conn, "list_scene_nodes", {"class_name": "vtkMRMLSegmentationNode"})
            t = Targets(
                segs["nodes"][0]["id"], spec.patient_id, spec.series_uid, spec.study_uid,
                bad_spec.series_uid, bad_spec.study_uid, nrrd, nhdr,
            )  # fmt: skip
            soak.started = time.monotonic()
            threads = [threading.Thread(target=sampler, args=({"serve": server.proc, "ris": ris_proc}, soak))]
            threads += [threading.Thread(target=modality, args=(s, mwl_port, soak)) for s in STATIONS]
            threads.append(
                threading.Thread(
                    target=rest_scheduler, args=(f"http://127.0.0.1:{api_port}", ris_token, soak)
                )
            )
            for th in threads:
                th.start()
            mix = MCP_MIX if args.profile == "all" else SERVICES_MIX
            faults = FAULTS if args.profile == "all" else SERVICES_FAULTS
            tasks = [
                asyncio.create_task(mcp_client(n, server.url, server.token, mix, t, soak))
                for n in range(CLIENTS)
            ]
            tasks.append(
                asyncio.create_task(
                    fault_loop(faults, args.fault_every, peers, server.url, server.token, t, mwl_port, soak)
                )
            )
            while soak.now() < args.minutes * 60 and not soak.stop.is_set():
                await asyncio.sleep(1)
            soak.stop.set()
            elapsed = soak.now()
            done, pending = await asyncio.wait(tasks, timeout=120)
            for task in pending:
                task.cancel()
            for th in threads:
                th.join(120)
            for name, proc in {"serve": server.proc, "ris": ris_proc}.items():
                if proc.poll() is None:
                    soak.samples[name].append((soak.now(), *proc_stats(proc.pid)))
                elif not soak.crashed:
                    soak.crashed = f"{name} exited with {proc.returncode}"
        lost = verify_writes(ris_block, soak)
    finally:
        ris_proc.terminate()
        ris_proc.wait(30)
        peers.stop()
    return report(args, soak, lost, elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--profile", choices=["all", "services"], default="all")
    parser.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults")
    args = parser.parse_args()
    args.date = datetime.now().astimezone().isoformat(timespec="minutes")
    sys.exit(0 if asyncio.run(run(args)) else 1)


if __name__ == "__main__":
    main()
