"""FHIR overhead: a Patient search through the MCP tool vs the same HTTP request sent directly.

Starts the test FHIR server (sekmet, as Testing/fixtures/fhir.py does), seeds it, then times
  reference: requests.Session GET Patient?identifier=...   (the server's own cost)
  client:    FhirClient + search() with paging logic       (our HTTP layer)
  tool:      fhir_search_patient via the in-memory MCP client (validation, thread hop, JSON)
and a 3-page search (page_size 3, 8 matches) against one request for the same 8.
Prints medians and ratios to the reference. Run: python benchmarks/bench_fhir.py [N]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))

from mcp import Client  # noqa: E402

from fixtures.fhir import fhir_services, start_sekmet, stop_sekmet  # noqa: E402
from SlicerMCPLib.core.domain_config import FhirServer  # noqa: E402
from SlicerMCPLib.fhir.client import FhirClient  # noqa: E402
from SlicerMCPLib.fhir.search import search  # noqa: E402
from SlicerMCPLib.fhir.seed import seed  # noqa: E402
from SlicerMCPLib.serving.server import build_server  # noqa: E402


def median_ms(fn, n: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def tool_median_ms(server, args: dict, n: int) -> float:
    async with Client(server) as client:
        await client.call_tool("fhir_search_patient", args)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            result = await client.call_tool("fhir_search_patient", args)
            times.append((time.perf_counter() - t0) * 1000)
            assert not result.is_error, result.content
        return statistics.median(times)


def main(n: int = 50) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        peer = start_sekmet(Path(tmp))
        try:
            cfg = FhirServer(**peer.server_config())
            client = FhirClient("bench", cfg)
            seed(client)
            session = requests.Session()
            session.headers.update(
                {"Authorization": f"Bearer {peer.token}", "Accept": "application/fhir+json"}
            )
            ident = "urn:slicer-mcp:mrn|SMCP-0002"

            def raw() -> None:
                r = session.get(
                    f"{peer.base_url}/Patient", params={"identifier": ident, "_count": "20"}, timeout=30
                )
                r.raise_for_status()
                r.json()

            ref = median_ms(raw, n)
            ours = median_ms(lambda: search(client, "Patient", [("identifier", ident)], 20), n)
            server = build_server(fhir_services({"bench": peer.server_config()}, current="bench"))
            tool = asyncio.run(tool_median_ms(server, {"identifier": ident}, n))

            paged = FhirClient("paged", FhirServer(**peer.server_config(page_size=3)))
            by_system = [("identifier", "urn:slicer-mcp:mrn|")]  # all 5 seeded patients: 2 pages of 3
            one = median_ms(lambda: search(client, "Patient", by_system, 20), n)
            two = median_ms(lambda: search(paged, "Patient", by_system, 20), n)
        finally:
            stop_sekmet(peer)
    print(f"FHIR Patient search, median of {n}:")
    print(f"  reference (raw HTTP GET)      {ref:7.2f} ms  1.00x")
    print(f"  FhirClient search()           {ours:7.2f} ms  {ours / ref:.2f}x")
    print(f"  fhir_search_patient (MCP)     {tool:7.2f} ms  {tool / ref:.2f}x")
    print(f"  5 matches in 1 page           {one:7.2f} ms  {one / ref:.2f}x")
    print(
        f"  5 matches in 2 pages (next)   {two:7.2f} ms  {two / ref:.2f}x  ({two / one:.2f}x the 1-page search)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
