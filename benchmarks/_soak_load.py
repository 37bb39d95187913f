"""The load of the soak benchmark (bench_soak.py): MCP clients, modalities, the REST scheduler, the
tally they share, and the sampler of the servers' memory and descriptors."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
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

from _server import Connection  # noqa: E402

from fixtures.ris import RIS_AET  # noqa: E402

CLIENTS = 4
STATIONS = [f"SOAK{i}" for i in range(1, CLIENTS + 1)]
FAMILIES = ["Anderson", "Okafor", "Smith", "Nguyen", "Zz-nobody"]
MRNS = [f"MRN10{n:02d}" for n in range(1, 13)]
CANCEL_STATION = "SOAKCR"
GRACE_S = 40.0  # after a fault: the breaker's 30 s cool-down plus a retry


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
    """execute_python code removing loaded volumes with their display and storage nodes (RemoveNode
    of a volume alone leaves its display node in the scene: ~100 KiB per load)."""
    return (
        f"for _id in {ids!r}:\n    _n = mrmlScene.GetNodeByID(_id)\n"
        "    _parts = [_n.GetNthDisplayNode(i) for i in range(_n.GetNumberOfDisplayNodes())]\n"
        "    _parts += [_n.GetStorageNode(), _n]\n"
        "    for _p in _parts:\n        if _p is not None:\n            mrmlScene.RemoveNode(_p)\n"
        f"len({ids!r})"
    )


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
