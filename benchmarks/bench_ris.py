"""MWL C-FIND over 1,000 scheduled items: our SCP (`slicer-mcp ris serve`, SQLite) against dcmtk
`wlmscpfs` serving the same items from .wl files made with `dump2dcm`, in the same run.

    .venv/bin/python benchmarks/bench_ris.py [queries-per-shape]

Both servers run as separate processes on loopback; the client is the same pynetdicom SCU
(one association per query, as a modality does). Prints p50/p99 per query shape and the
ratio ours / wlmscpfs (target <= 1.0x).
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from SlicerMCPLib.core.domain_config import MiniRisSettings
from SlicerMCPLib.dicom.status import Status
from SlicerMCPLib.ris.schema import PROCEDURES
from SlicerMCPLib.ris.store import RisStore
from SlicerMCPLib.ris.worklist import entry_to_item

ITEMS = 1000
STATIONS = [f"CR{n}" for n in range(1, 6)]
DAYS = 10
FIRST_DAY = datetime(2025, 6, 2, 7, 0)
FAMILY = ["Smith", "Jones", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Thomas", "Roberts", "Walker"]
GIVEN = ["Anna", "Ben", "Clara", "David", "Emma", "Frank", "Grace", "Henry", "Iris", "Jack"]
SPS = "ScheduledProcedureStepSequence"
VR = {
    "AccessionNumber": "SH",
    "ReferringPhysicianName": "PN",
    "PatientName": "PN",
    "PatientID": "LO",
    "IssuerOfPatientID": "LO",
    "PatientBirthDate": "DA",
    "PatientSex": "CS",
    "StudyInstanceUID": "UI",
    "RequestedProcedureDescription": "LO",
    "RequestedProcedureID": "SH",
    "RequestedProcedurePriority": "SH",
    "Modality": "CS",
    "ScheduledStationAETitle": "AE",
    "ScheduledStationName": "SH",
    "ScheduledProcedureStepStartDate": "DA",
    "ScheduledProcedureStepStartTime": "TM",
    "ScheduledPerformingPhysicianName": "PN",
    "ScheduledProcedureStepDescription": "LO",
    "ScheduledProcedureStepID": "SH",
    "ScheduledProcedureStepStatus": "CS",
    "BodyPartExamined": "CS",
    "CodeValue": "SH",
    "CodingSchemeDesignator": "SH",
    "CodeMeaning": "LO",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_store(path: Path) -> RisStore:
    store = RisStore.open(MiniRisSettings(sqlite_path=str(path), seed_on_create=False))
    for n in range(ITEMS):
        mrn = f"BM{n:05d}"
        store.add_patient(mrn, FAMILY[n % 10], GIVEN[(n // 10) % 10], f"19{50 + n % 50}0101", "FM"[n % 2])
        order = store.create_order(mrn, PROCEDURES[n % len(PROCEDURES)][0])
        day = (n // len(STATIONS)) % DAYS
        when = FIRST_DAY + timedelta(days=day, minutes=15 * (n // (len(STATIONS) * DAYS)))
        store.create_mwl(order.id, STATIONS[n % len(STATIONS)], when, station_name="ROOM")
    return store


def _tag(keyword: str) -> str:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    return f"({tag >> 16:04x},{tag & 0xFFFF:04x})"


def _dump_lines(item: dict, depth: int = 0) -> list[str]:
    lines = []
    for kw, value in item.items():
        if isinstance(value, list):
            lines.append(f"{_tag(kw)} SQ (Sequence with undefined length)")
            for sub in value:
                lines.append("(fffe,e000) na (Item with undefined length)")
                lines += _dump_lines(sub, depth + 1)
                lines.append("(fffe,e00d) na (ItemDelimitationItem)")
            lines.append("(fffe,e0dd) na (SequenceDelimitationItem)")
        else:
            lines.append(f"{_tag(kw)} {VR[kw]} [{value}]")
    return lines


def write_wl_files(store: RisStore, folder: Path, aet: str) -> int:
    """One .wl per scheduled item, made with dump2dcm from a text dump of the same item."""
    target = folder / aet
    target.mkdir(parents=True)
    (target / "lockfile").touch()
    entries = store.list_worklist(limit=ITEMS + 10)
    for e in entries:
        dump = target / f"{e.mwl_id}.dump"
        dump.write_text("\n".join(_dump_lines(entry_to_item(e))) + "\n")
        subprocess.run(["dump2dcm", "-q", str(dump), str(target / f"{e.mwl_id}.wl")], check=True)
        dump.unlink()
    return len(entries)


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def query(keys: dict, sps: dict) -> Dataset:
    ds = Dataset()
    for kw, v in keys.items():
        setattr(ds, kw, v)
    item = Dataset()
    for kw, v in sps.items():
        setattr(item, kw, v)
    ds.ScheduledProcedureStepSequence = Sequence([item])
    return ds


SHAPES = {
    "station + day (a modality's morning query)": query(
        {"PatientName": "", "PatientID": "", "AccessionNumber": "", "StudyInstanceUID": ""},
        {
            "ScheduledStationAETitle": "CR3",
            "ScheduledProcedureStepStartDate": "20250605",
            "Modality": "",
            "ScheduledProcedureStepStartTime": "",
        },
    ),
    "patient name wildcard, all days": query(
        {"PatientName": "Wil*^Em*", "PatientID": "", "AccessionNumber": ""},
        {"ScheduledStationAETitle": "", "ScheduledProcedureStepStartDate": ""},
    ),
    "date range, 3 days, all stations": query(
        {"PatientName": "", "PatientID": ""},
        {"ScheduledProcedureStepStartDate": "20250603-20250605", "Modality": "CR"},
    ),
}


def one_query(ae: AE, port: int, called: str, ds: Dataset) -> tuple[float, int]:
    """One modality-style query: associate, C-FIND, release; (milliseconds, matches)."""
    t0 = time.perf_counter()
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    found = 0
    for status, _ident in assoc.send_c_find(ds, ModalityWorklistInformationFind):
        if status and int(status.Status) in (Status.PENDING, Status.PENDING_WARNING):
            found += 1
    assoc.release()
    return (time.perf_counter() - t0) * 1000, found


def run_interleaved(ours: int, theirs: int, ds: Dataset, n: int) -> tuple[list[float], list[float], int, int]:
    """Alternate the two servers query by query, so load drift on a shared machine hits both alike."""
    ae = AE(ae_title="BENCHSCU")
    ae.add_requested_context(ModalityWorklistInformationFind)
    for _ in range(3):  # warm up
        one_query(ae, ours, "MINIRIS", ds)
        one_query(ae, theirs, "WLMSCPFS", ds)
    mine, ref = [], []
    c1 = c2 = 0
    for _ in range(n):
        t, c1 = one_query(ae, ours, "MINIRIS", ds)
        mine.append(t)
        t, c2 = one_query(ae, theirs, "WLMSCPFS", ds)
        ref.append(t)
    return mine, ref, c1, c2


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    for tool in ("wlmscpfs", "dump2dcm"):
        if not shutil.which(tool):
            print(f"{tool} missing: apt-get install dcmtk", file=sys.stderr)
            return 2
    env = {**os.environ, "TCP_NODELAY": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        t0 = time.perf_counter()
        store = build_store(tmpdir / "ris.sqlite")
        files = write_wl_files(store, tmpdir / "wl", "WLMSCPFS")
        store.close()
        print(
            f"{files} items in SQLite and as .wl files ({time.perf_counter() - t0:.1f} s to build)",
            file=sys.stderr,
        )
        ours_port, theirs_port = free_port(), free_port()
        config = tmpdir / "ris.yaml"
        config.write_text(
            yaml.safe_dump({"mini_ris": {"sqlite_path": str(tmpdir / "ris.sqlite"), "seed_on_create": False}})
        )
        ours = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "slicer_mcp",
                "ris",
                "serve",
                "--config",
                str(config),
                "--mwl-port",
                str(ours_port),
                "--no-api",
            ],
            stderr=subprocess.DEVNULL,
            env={**env, "SLICER_MCP_HOME": str(tmpdir / "home")},
        )
        theirs = subprocess.Popen(
            ["wlmscpfs", "-dfp", str(tmpdir / "wl"), str(theirs_port)],
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        try:
            wait_port(ours_port)
            wait_port(theirs_port)
            rows = []
            for label, ds in SHAPES.items():
                mine, ref, c1, c2 = run_interleaved(ours_port, theirs_port, ds, n)
                if c1 != c2:
                    print(f"MISMATCH for {label}: ours {c1} items, wlmscpfs {c2}", file=sys.stderr)
                rows.append((label, c1, c2, pct(ref, 50), pct(ref, 99), pct(mine, 50), pct(mine, 99)))
        finally:
            ours.terminate()
            theirs.terminate()
            ours.wait(20)
            theirs.wait(20)
    print(f"MWL C-FIND, {ITEMS} scheduled items, {n} queries per shape (associate + C-FIND + release)")
    print(
        "| query | matches (ours / wlmscpfs) | wlmscpfs p50 | p99 | ours p50 | p99 | ratio p50 | ratio p99 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, c1, c2, rp50, rp99, mp50, mp99 in rows:
        print(
            f"| {label} | {c1} / {c2} | {rp50:.2f} ms | {rp99:.2f} ms | {mp50:.2f} ms | {mp99:.2f} ms "
            f"| {mp50 / rp50:.2f}x | {mp99 / rp99:.2f}x |"
        )
    print(f"median of the three: {statistics.median(r[5] / r[3] for r in rows):.2f}x (target <= 1.0x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
