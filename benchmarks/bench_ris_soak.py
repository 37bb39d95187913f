"""Soak of the RIS services: `slicer-mcp ris serve` (SQLite) under a modality department's load.

    .venv/bin/python benchmarks/bench_ris_soak.py [minutes]      (default 20)

For the whole run, at once:
- 4 modality threads, each one association per C-FIND of its station's worklist (4 at a time);
- 1 MPPS thread: N-CREATE IN PROGRESS then N-SET COMPLETED for scheduled entries;
- 1 REST thread: POST /ris/api/worklist then DELETE it (cancel), on the seeded orders;
- 1 FHIR thread: Patient searches through our FhirClient against a real sekmet-fhir server,
  which is restarted every 3 minutes (the peer restart; searches during it fail, coded).
Every acknowledged write (MPPS COMPLETED, REST 201 / 200) is checked in the database at the end
(lost writes: must be 0); refused associations must be 0 (4 at a time is far under the limit);
RSS and open descriptors of the serve process are sampled every 30 s (first vs last minute).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "Testing"))
from fixtures.fhir import start_sekmet, stop_sekmet  # noqa: E402
from fixtures.ris import start_ris_serve  # noqa: E402
from SlicerMCPLib.core.domain_config import FhirServer, MiniRisSettings  # noqa: E402
from SlicerMCPLib.core.errors import SlicerMCPError  # noqa: E402
from SlicerMCPLib.fhir.client import FhirClient  # noqa: E402
from SlicerMCPLib.ris.store import RisStore  # noqa: E402

STATION = "VIRTUALCR"


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.completed_mpps: list[str] = []
        self.rest_cancelled: list[int] = []

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n


def proc_stats(pid: int) -> tuple[int, int]:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def modality(port: int, stop: threading.Event, tally: Tally) -> None:
    ae = AE(ae_title=STATION)
    ae.add_requested_context(ModalityWorklistInformationFind)
    query = Dataset()
    query.PatientName = ""
    query.AccessionNumber = ""
    sps = Dataset()
    sps.ScheduledStationAETitle = STATION
    sps.ScheduledProcedureStepStartDate = ""
    query.ScheduledProcedureStepSequence = Sequence([sps])
    while not stop.is_set():
        assoc = ae.associate("127.0.0.1", port, ae_title="MINIRIS")
        if not assoc.is_established:
            tally.add("refused_associations")
            time.sleep(0.2)
            continue
        statuses = [int(s.Status) for s, _ in assoc.send_c_find(query, ModalityWorklistInformationFind) if s]
        assoc.release()
        tally.add("cfind_ok" if statuses and statuses[-1] == 0 else "cfind_failed")


def mpps(port: int, api: str, headers: dict[str, str], stop: threading.Event, tally: Tally) -> None:
    ae = AE(ae_title=STATION)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    client = httpx.Client(headers=headers, timeout=30)
    while not stop.is_set():
        entries = client.get(f"{api}/ris/api/worklist", params={"status": "SCHEDULED"}).json()["entries"]
        if not entries:
            time.sleep(1)
            continue
        entry = entries[0]
        assoc = ae.associate("127.0.0.1", port, ae_title="MINIRIS")
        if not assoc.is_established:
            tally.add("refused_associations")
            continue
        uid = generate_uid()
        ds = Dataset()
        item = Dataset()
        item.StudyInstanceUID = entry["study_instance_uid"]
        item.AccessionNumber = entry["accession_number"]
        item.ScheduledProcedureStepID = entry["scheduled_procedure_step_id"]
        ds.ScheduledStepAttributesSequence = Sequence([item])
        ds.PerformedProcedureStepStatus = "IN PROGRESS"
        ds.Modality = entry["modality"]
        status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
        if status and int(status.Status) == 0:
            done = Dataset()  # what a COMPLETED step must carry (the SCP refuses it otherwise, 0x0121)
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
            status, _ = assoc.send_n_set(done, ModalityPerformedProcedureStep, uid)
            if status and int(status.Status) == 0:
                with tally.lock:
                    tally.completed_mpps.append(uid)
        else:
            tally.add("mpps_create_refused")
        assoc.release()


def rest(api: str, headers: dict[str, str], stop: threading.Event, tally: Tally) -> None:
    client = httpx.Client(headers=headers, timeout=30)
    while not stop.is_set():
        orders = client.get(f"{api}/ris/api/orders", params={"status": "CANCELLED"}).json()["orders"]
        orders += client.get(f"{api}/ris/api/orders", params={"status": "ORDERED"}).json()["orders"]
        if not orders:
            time.sleep(1)
            continue
        r = client.post(
            f"{api}/ris/api/worklist",
            json={
                "order_id": orders[0]["id"],
                "scheduled_station_aet": "SOAKCR",
                "scheduled_time": "2030-01-02T10:00",
            },
        )
        if r.status_code != 201:
            tally.add(f"rest_post_{r.status_code}")
            continue
        d = client.delete(f"{api}/ris/api/worklist/{r.json()['mwl_id']}")
        if d.status_code == 200:
            with tally.lock:
                tally.rest_cancelled.append(r.json()["mwl_id"])
        else:
            tally.add(f"rest_delete_{d.status_code}")


def fhir(holder: dict[str, Any], stop: threading.Event, tally: Tally) -> None:
    while not stop.is_set():
        client: FhirClient = holder["client"]
        try:
            client.request("GET", "Patient", params={"family": "Smith", "_count": "10"})
            tally.add("fhir_ok")
        except SlicerMCPError as exc:
            tally.add(f"fhir_{exc.code.value}")
            time.sleep(0.5)


def main() -> None:
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    work = Path(tempfile.mkdtemp(prefix="ris-soak-"))
    sqlite = work / "ris.sqlite"
    config = work / "ris.yaml"
    config.write_text(
        yaml.safe_dump({"allow": {"ris_write": True}, "mini_ris": {"sqlite_path": str(sqlite)}})
    )
    process, mwl_port, api_port, log = start_ris_serve(config, work / "home")
    api = f"http://127.0.0.1:{api_port}"
    headers = {"Authorization": f"Bearer {(work / 'home' / 'token').read_text().strip()}"}
    (work / "sekmet0").mkdir()
    peer = start_sekmet(work / "sekmet0")
    holder = {"client": FhirClient("soak", FhirServer(**peer.server_config(timeout_s=10)))}
    tally, stop = Tally(), threading.Event()
    threads = [threading.Thread(target=modality, args=(mwl_port, stop, tally)) for _ in range(4)]
    threads += [
        threading.Thread(target=mpps, args=(mwl_port, api, headers, stop, tally)),
        threading.Thread(target=rest, args=(api, headers, stop, tally)),
        threading.Thread(target=fhir, args=(holder, stop, tally)),
    ]
    for t in threads:
        t.start()
    samples: list[tuple[float, int, int]] = []
    start = time.monotonic()
    next_restart, restarts = start + 180, 0
    while time.monotonic() - start < minutes * 60:
        samples.append((time.monotonic() - start, *proc_stats(process.pid)))
        if time.monotonic() >= next_restart:
            stop_sekmet(peer)
            (work / f"sekmet{restarts + 1}").mkdir()
            peer = start_sekmet(work / f"sekmet{restarts + 1}")
            holder["client"] = FhirClient("soak", FhirServer(**peer.server_config(timeout_s=10)))
            restarts += 1
            next_restart += 180
        time.sleep(30)
    stop.set()
    for t in threads:
        t.join(60)
    samples.append((time.monotonic() - start, *proc_stats(process.pid)))
    process.terminate()
    process.wait(30)
    stop_sekmet(peer)
    store = RisStore.open(MiniRisSettings(sqlite_path=str(sqlite)))
    lost = sum(1 for uid in tally.completed_mpps if store.get_mpps(uid).status != "COMPLETED")
    lost += sum(1 for mwl_id in tally.rest_cancelled if store.get_mwl(mwl_id).status != "CANCELLED")
    store.close()
    first = [s for s in samples if s[0] <= 60]
    last = [s for s in samples if s[0] >= samples[-1][0] - 60]
    print(f"duration {minutes:g} min, sekmet restarts {restarts}")
    for key, value in sorted(tally.counts.items()):
        print(f"  {key}: {value}")
    print(f"  mpps completed (acknowledged): {len(tally.completed_mpps)}")
    print(f"  rest schedule+cancel (acknowledged): {len(tally.rest_cancelled)}")
    print(f"  lost writes: {lost}")
    print(f"  refused associations: {tally.counts.get('refused_associations', 0)}")
    print(
        f"  serve RSS KiB first minute {max(s[1] for s in first)} -> last minute {max(s[1] for s in last)}"
        f" (ratio {max(s[1] for s in last) / max(s[1] for s in first):.2f})"
    )
    print(f"  serve fds first minute {max(s[2] for s in first)} -> last minute {max(s[2] for s in last)}")
    print(
        f"  serve log warnings: {sum('WARNING' in x for x in log.read_text(errors='replace').splitlines())}"
    )


if __name__ == "__main__":
    main()
