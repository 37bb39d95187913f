"""`slicer-mcp fhir check` and `slicer-mcp fhir seed`: talk to a FHIR server from the config."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from SlicerMCPLib.core.config import load_config

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fhir", help="FHIR server commands (check, seed)")
    p.set_defaults(func=lambda args: p.print_help() or 2)
    fhir_sub = p.add_subparsers(dest="fhir_command", metavar="FHIR_COMMAND")

    check = fhir_sub.add_parser("check", help="read the server's CapabilityStatement and print a summary")
    check.add_argument("--server", help="a name from fhir_servers (default: current_fhir)")
    check.set_defaults(func=run_check)

    seed = fhir_sub.add_parser(
        "seed",
        help="write synthetic test data: 5 patients, orders, ImagingStudies of the DICOM test studies, reports",
    )
    seed.add_argument("--server", help="a name from fhir_servers (default: current_fhir)")
    seed.add_argument(
        "--dicom-node",
        help="DICOM node (from nodes) holding the studies; its dicomweb_url becomes the ImagingStudy Endpoint",
    )
    seed.add_argument(
        "--dry-run", action="store_true", help="print the data set (MRNs, UIDs) without writing"
    )
    seed.set_defaults(func=run_seed)


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2))


def run_check(args: argparse.Namespace) -> int:
    from SlicerMCPLib.fhir.service import FhirService

    service = FhirService(load_config(args.config))
    try:
        _print(service.verify(args.server).model_dump())
    finally:
        service.close()
    return 0


def seed_listing() -> list[dict[str, Any]]:
    """The synthetic studies with the UIDs a DICOM generator must use to match them."""
    from SlicerMCPLib.fhir.seed import SEED_STUDIES

    return [study.record().model_dump(exclude_none=True) for study in SEED_STUDIES]


def run_seed(args: argparse.Namespace) -> int:
    from SlicerMCPLib.core.errors import ConfigError
    from SlicerMCPLib.fhir.seed import seed
    from SlicerMCPLib.fhir.service import FhirService

    if args.dry_run:
        _print(seed_listing())
        return 0
    config = load_config(args.config)
    endpoint = None
    if args.dicom_node:
        node = config.nodes.get(args.dicom_node)
        if node is None or not node.dicomweb_url:
            raise ConfigError(
                f"DICOM node {args.dicom_node!r} is not in nodes or has no dicomweb_url",
                details={"config_key": f"nodes.{args.dicom_node}.dicomweb_url"},
            )
        endpoint = (args.dicom_node, node.dicomweb_url)
    service = FhirService(config)
    try:
        client = service.client(args.server)
        log.info("seeding FHIR server %s (%s)", client.name, client.base_url)
        report = seed(client, endpoint)
    finally:
        service.close()
    _print(
        {
            "server": client.name,
            "patients": report.patients,
            "imaging_studies": report.imaging_studies,
            "service_requests": report.service_requests,
            "diagnostic_reports": report.diagnostic_reports,
        }
    )
    return 0
