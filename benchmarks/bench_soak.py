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
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import Connection, SlicerMcpProcess  # noqa: E402
from _soak_load import (  # noqa: E402
    CLIENTS,
    GRACE_S,
    STATIONS,
    Coded,
    Soak,
    Targets,
    mcp_client,
    modality,
    proc_stats,
    rest_scheduler,
    sampler,
    tool,
)

from fixtures.fhir import start_sekmet, stop_sekmet  # noqa: E402
from fixtures.mariadb import restart_mariadb, start_mariadb, stop_mariadb  # noqa: E402
from fixtures.orthanc import OUR_AET, make_ct_series, restart_orthanc, start_orthanc, stop_orthanc  # noqa: E402
from fixtures.ris import start_ris_serve  # noqa: E402
from SlicerMCPLib.core.domain_config import FhirServer, MiniRisSettings  # noqa: E402
from SlicerMCPLib.core.errors import SlicerMCPError  # noqa: E402
from SlicerMCPLib.fhir.client import FhirClient  # noqa: E402
from SlicerMCPLib.fhir.seed import seed as seed_fhir  # noqa: E402
from SlicerMCPLib.ris.store import RisStore  # noqa: E402

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

# --- faults ------------------------------------------------------------------------------------


class Peers:
    """The real peers, restartable on the same ports and data."""

    def __init__(self, work: Path, mariadb: bool):
        self.work = work
        self.orthanc = start_orthanc(self._dir("orthanc"))
        self.mariadb = start_mariadb(self._dir("mariadb")) if mariadb else None
        self.fhir = start_sekmet(self._dir("sekmet"))

    def _dir(self, name: str) -> Path:
        (self.work / name).mkdir(exist_ok=True)
        return self.work / name

    def restart(self, which: str) -> None:
        if which == "restart_orthanc":
            self.orthanc = restart_orthanc(self.orthanc)
        elif which == "restart_mariadb" and self.mariadb is not None:
            self.mariadb = restart_mariadb(self.mariadb)
        elif which == "restart_fhir":
            port = int(self.fhir.base_url.split(":")[2].split("/")[0])
            stop_sekmet(self.fhir)
            self.fhir = start_sekmet(self.work / "sekmet", port=port)

    def stop(self) -> None:
        stop_orthanc(self.orthanc)
        if self.mariadb is not None:
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
        try:
            async with Connection(url, token) as conn:
                await conn.raw("tools/call", {"name": name, "arguments": args}, timeout=0.15)
        except* httpx2.TimeoutException:  # the client gave up and closed its connection mid-call
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
            out = await tool(conn, name, args)
            soak.record(op, "LOADED (should have failed)", text=json.dumps(out)[:300])
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


RIS_OPS = {"schedule_order", "list_worklist", "mwl_c_find", "rest_orders", "rest_schedule", "rest_cancel"}
AFFECTS = {  # what each restart should disturb (the outage shown per fault)
    "restart_orthanc": {"load_series", "query_studies", "retrieve_series"},
    "restart_mariadb": RIS_OPS | {"mpps_in_progress", "mpps_completed"},
    "restart_fhir": {"fhir_search_patient"},
}
TRACE_START = "import builtins, tracemalloc\ntracemalloc.start(8)\nbuiltins._soak_snapshot = tracemalloc.take_snapshot()\n1"
TRACE_DIFF = (
    "import builtins, tracemalloc\n_now = tracemalloc.take_snapshot()\n"
    "_top = _now.compare_to(builtins._soak_snapshot, 'traceback')[:12]\n"
    "'\\n'.join(f'{s.size_diff / 1024:+.0f} KiB {s.count_diff:+d} blocks\\n    ' + "
    "'\\n    '.join(s.traceback.format()[-6:]) for s in _top)"
)


async def trace_memory(url: str, token: str, code: str) -> Any:
    """--trace-memory: Python allocations in the server (tracemalloc via execute_python), from a
    snapshot after the warm-up to the end: where a growth comes from."""
    async with Connection(url, token) as conn:
        out = await tool(conn, "execute_python", {"code": code})
    return out.get("result") or out


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


def window_median(samples: list[tuple[float, int, int]], lo: float, hi: float, i: int) -> float:
    picked = [s[i] for s in samples if lo <= s[0] <= hi] or [samples[0][i]]
    return statistics.median(picked)  # a transient peak (one big render) is not a trend


def slope_per_min(samples: list[tuple[float, int, int]], i: int, after: float) -> float:
    pts = [(s[0] / 60, s[i]) for s in samples if s[0] >= after]
    if len(pts) < 3:
        return 0.0
    return statistics.linear_regression([p[0] for p in pts], [p[1] for p in pts]).slope


def verify_writes(ris_block: dict[str, Any], soak: Soak) -> dict[str, int]:
    """Each acknowledged write looked up in the database: the lost ones by kind (empty: none lost)."""
    store = RisStore.open(MiniRisSettings(**ris_block))
    checks = [("order", lambda i=i, a=a: store.get_order(i).accession_number == a) for i, a in soak.orders]
    checks += [("worklist entry", lambda i=i: store.get_mwl(i).mwl_id == i) for i in soak.scheduled]
    checks += [("cancel", lambda i=i: store.get_mwl(i).status == "CANCELLED") for i in soak.cancelled]
    checks += [
        ("MPPS COMPLETED", lambda u=u: store.get_mpps(u).status == "COMPLETED") for u in soak.completed_mpps
    ]
    lost: Counter[str] = Counter()
    try:
        for kind, present in checks:
            try:
                lost[kind] += not present()
            except SlicerMCPError as exc:  # RIS_NOT_FOUND: not there at all
                lost[f"{kind} ({exc.code})"] += 1
    finally:
        store.close()
    return {kind: n for kind, n in lost.items() if n}


def report(
    args: argparse.Namespace, soak: Soak, lost: dict[str, int], elapsed: float, logs: dict[str, list[str]]
) -> bool:
    print(
        f"\nsoak profile {args.profile}, RIS on {args.store}: {elapsed / 60:.1f} min, {len(soak.faults)} faults, started {args.date}"
    )
    for k, (name, start, end, note) in enumerate(soak.faults):
        until = soak.faults[k + 1][1] if k + 1 < len(soak.faults) else elapsed
        hit = [
            e[0]
            for e in soak.errors
            if start <= e[0] < until and e[1] in AFFECTS.get(name, ()) and "RIS_CONFLICT" not in e[2]
        ]
        effect = f"; {len(hit)} errors, the last {hit[-1] - start:.0f} s after the start" if hit else ""
        print(f"  fault {start / 60:5.1f} min {name:<22} {end - start:5.1f} s  {note}{effect}")
    print("calls (ok / errors by code; p50 of ok calls):")
    ops = sorted({op for op, _ in soak.calls})
    for op in ops:
        ok = soak.calls[op, "ok"]
        bad = {code: n for (o, code), n in soak.calls.items() if o == op and code != "ok"}
        p50 = f"{statistics.median(soak.latency[op]):8.1f} ms" if soak.latency[op] else " " * 11
        print(f"  {op:<22} {ok:7d} ok {p50}  {', '.join(f'{c} {n}' for c, n in sorted(bad.items()))}")
    races = [e for e in soak.errors if "RIS_CONFLICT" in e[2]]  # two schedulers took one order: one won
    outside = [
        e for e in soak.errors if not soak.in_fault(e[0]) and not e[1].startswith("bad_") and e not in races
    ]
    internal = [e for e in soak.errors if "INTERNAL_ERROR" in e[2] or "UNCODED" in e[2]]
    bad_loaded = [e for e in soak.errors if "LOADED" in e[2]]
    total = sum(soak.calls.values())
    print(
        f"errors: {len(soak.errors)} of {total} calls ({len(soak.errors) / max(total, 1):.2%}); "
        f"outside fault windows (+{GRACE_S:.0f} s): {len(outside)}"
    )
    print(f"  RIS_CONFLICT (the REST scheduler and a client took the same new order; one won): {len(races)}")
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
        f"{len(soak.cancelled)} cancels, {len(soak.completed_mpps)} MPPS COMPLETED = {acked}; lost: {lost or 'none'}"
    )
    window = min(300.0, elapsed / 5)
    kinds = {f[0] for f in soak.faults}
    cycle = next(  # the end of the first full round of faults: every first-time cost is paid by then
        (
            end
            for k, (_, _, end, _) in enumerate(soak.faults)
            if {f[0] for f in soak.faults[: k + 1]} == kinds
        ),
        window,
    )
    cycle = min(cycle, elapsed - 2 * window)
    print(
        f"memory and descriptors: median over the first vs the last {window / 60:.1f} min, and over "
        f"{window / 60:.1f} min after the first round of faults (at {cycle / 60:.1f} min) vs the last; "
        "slope from that round on:"
    )
    flat = True
    for name, samples in soak.samples.items():
        first, last = (0, window), (elapsed - window, elapsed)
        steady = (cycle, cycle + window)
        rss0, rss1, rss_c = (window_median(samples, *w, 1) / 1024 for w in (first, last, steady))
        fd0, fd1, fd_c = (window_median(samples, *w, 2) for w in (first, last, steady))
        print(
            f"  {name:<6} RSS {rss0:7.1f} -> {rss1:7.1f} MiB ({rss1 / rss0:.3f}x); after the round "
            f"{rss_c:7.1f} -> {rss1:7.1f} MiB ({rss1 / rss_c:.3f}x, {slope_per_min(samples, 1, cycle) / 1024:+.2f} "
            f"MiB/min); fds {fd0:.1f} -> {fd1:.1f}, after the round {fd_c:.1f} -> {fd1:.1f} "
            f"({slope_per_min(samples, 2, cycle):+.2f}/min); max RSS {max(s[1] for s in samples) / 1024:.1f} MiB, "
            f"max fds {max(s[2] for s in samples)}"
        )
        flat = flat and rss1 / rss_c <= 1.10 and fd1 - fd_c <= 5
    ok = not soak.crashed and not internal and not lost and not bad_loaded and flat
    for name, lines in logs.items():
        levels = Counter(
            level for line in lines for level in (" WARNING ", " ERROR ", "Traceback") if level in line
        )
        print(f"  {name} log: {len(lines)} lines, {dict(levels) or 'no warnings'}")
    print(f"crash: {soak.crashed or 'none'}")
    print(
        f"verdict: {'PASS' if ok else 'FAIL'} (no crash, no INTERNAL_ERROR/uncoded, no lost write, "
        "no bad file loaded, RSS within 1.10x and fds within +5 from after the first round of faults to the end)"
    )
    return ok


async def run(args: argparse.Namespace) -> bool:
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    peers = Peers(work, mariadb=args.store == "mariadb")
    if peers.mariadb is not None:
        ris_block = {**peers.mariadb.create_database(), "mwl_port": 0, "api_port": 0}
    else:  # both processes on one SQLite file (WAL), as the RIS tools and `ris serve` share it
        ris_block = {
            "backend": "sqlite",
            "sqlite_path": str(work / "ris.sqlite"),
            "mwl_port": 0,
            "api_port": 0,
        }
    spec, series = make_ct_series(slices=12)
    bad_spec, bad_series = make_ct_series(slices=6)
    peers.orthanc.upload(series + bad_series)
    peers.orthanc.truncate_file(bad_series[0].SOPInstanceUID)
    seed_fhir(FhirClient("seed", FhirServer(**peers.fhir.server_config())))
    nrrd, nhdr = make_bad_files(work)
    ris_config, serve_config = write_configs(work, peers, ris_block)
    (work / "ris-home").mkdir()
    ris_proc, mwl_port, api_port, ris_log = start_ris_serve(ris_config, work / "ris-home")
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
            faults = [
                f
                for f in (FAULTS if args.profile == "all" else SERVICES_FAULTS)
                if f != "restart_mariadb" or peers.mariadb is not None
            ]
            tasks = [
                asyncio.create_task(mcp_client(n, server.url, server.token, mix, t, soak))
                for n in range(CLIENTS)
            ]
            tasks.append(
                asyncio.create_task(
                    fault_loop(faults, args.fault_every, peers, server.url, server.token, t, mwl_port, soak)
                )
            )
            traced = False
            while soak.now() < args.minutes * 60 and not soak.stop.is_set():
                await asyncio.sleep(1)
                if args.trace_memory and not traced and soak.now() > args.minutes * 15:  # after warm-up
                    traced = await trace_memory(server.url, server.token, TRACE_START)
            if traced:
                print(await trace_memory(server.url, server.token, TRACE_DIFF), file=sys.stderr)
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
    samples = work / "soak-samples.json"  # time s, RSS KiB, open fds per process: for plotting
    samples.write_text(json.dumps({"samples": soak.samples, "errors": soak.errors, "faults": soak.faults}))
    print(f"samples: {samples}", file=sys.stderr)
    logs = {"serve": server.log, "ris": ris_log.read_text(errors="replace").splitlines()}
    (work / "serve.log").write_text("".join(server.log))
    print(f"logs: {work / 'serve.log'}, {ris_log}", file=sys.stderr)
    return report(args, soak, lost, elapsed, logs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--profile", choices=["all", "services"], default="all")
    parser.add_argument("--store", choices=["mariadb", "sqlite"], default="mariadb", help="the RIS database")
    parser.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults")
    parser.add_argument("--trace-memory", action="store_true", help="tracemalloc in the server (diagnosis)")
    args = parser.parse_args()
    args.date = datetime.now().astimezone().isoformat(timespec="minutes")
    sys.exit(0 if asyncio.run(run(args)) else 1)


if __name__ == "__main__":
    main()
