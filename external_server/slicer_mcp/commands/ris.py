"""`slicer-mcp ris serve` (MWL/MPPS SCP + REST API in one process) and `slicer-mcp ris seed`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from SlicerMCPLib.core.config import Config, load_config

from ..malloc_arenas import limit_malloc_arenas

log = logging.getLogger("slicer_mcp.ris")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ris", help="mini-RIS: worklist/MPPS services and demo data")
    p.set_defaults(func=lambda args: p.print_help(sys.stderr) or 2)
    ris_sub = p.add_subparsers(dest="ris_command", metavar="RIS_COMMAND")

    serve = ris_sub.add_parser("serve", help="run the MWL/MPPS SCP and the REST API until stopped")
    serve.add_argument(
        "--mwl-port", type=int, help="DICOM port of the MWL/MPPS SCP (default mini_ris.mwl_port)"
    )
    serve.add_argument("--api-port", type=int, help="REST API port (default mini_ris.api_port; 0 picks one)")
    serve.add_argument("--no-api", action="store_true", help="serve DICOM only")
    serve.set_defaults(func=run_serve)

    seed = ris_sub.add_parser(
        "seed", help="create the database if needed and fill it with demo patients/orders"
    )
    seed.set_defaults(func=run_seed)


def _config(args: argparse.Namespace, mini_ris: dict[str, Any] | None = None) -> Config:
    return load_config(args.config, overrides={"mini_ris": mini_ris} if mini_ris else None)


def run_seed(args: argparse.Namespace) -> int:
    from SlicerMCPLib.ris.seed import seed
    from SlicerMCPLib.ris.store import RisStore

    config = _config(args)
    store = RisStore.open(config.mini_ris)
    try:
        counts = seed(store, config.mini_ris.modality.ae_title, config.mini_ris.modality.station_name)
    finally:
        store.close()
    print(
        f"slicer-mcp ris seed: {store.db.describe}: added {counts['patients']} patients, "
        f"{counts['orders']} orders, {counts['mwl_entries']} worklist entries",
        file=sys.stderr,
    )
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from SlicerMCPLib.ris.api import serve_api
    from SlicerMCPLib.ris.service import RisService
    from SlicerMCPLib.serving.auth import load_or_create_token, token_path

    limit_malloc_arenas()  # before the SCP's association threads start (see malloc_arenas.py)
    config = _config(args)
    service = RisService(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    api = None
    try:
        log.info("RIS database: %s", service.store.db.describe)
        scp = service.start_scp(args.mwl_port)
        if not args.no_api:
            token = load_or_create_token(token_path(config.server))
            api = serve_api(service, config, token, args.api_port)
        # one machine-readable line for scripts and tests (stderr: stdout stays clean)
        print(
            f"RIS ready mwl={scp.host}:{scp.port} aet={scp.ae_title} api={api.port if api else '-'}",
            file=sys.stderr,
            flush=True,
        )
        stop.wait()
    finally:
        if api is not None:
            api.stop()
        service.close()
    return 0
