"""TLS against a real HTTPS FHIR server (sekmet with a certificate from a private test CA):
verification is always on, and `ca_bundle` is the one way to trust a private CA."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fixtures.fhir import (
    FhirPeer,
    call_error,
    call_one,
    fhir_services,
    make_tls_files,
    start_sekmet,
    stop_sekmet,
)
from SlicerMCPLib.core.errors import ErrorCode


@pytest.fixture(scope="module")
def https_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FhirPeer, str]]:
    folder = tmp_path_factory.mktemp("sekmet-tls")
    files = make_tls_files(folder)
    peer = start_sekmet(folder, tls=files)
    try:
        yield peer, str(files[0])
    finally:
        stop_sekmet(peer)


def test_private_ca_is_trusted_only_through_ca_bundle(https_peer) -> None:
    peer, ca = https_peer
    assert peer.base_url.startswith("https://")
    trusted = fhir_services({"tls": peer.server_config(ca_bundle=ca)}, current="tls")
    cap = call_one(trusted, "verify_fhir_connection")
    assert cap["fhir_version"] == "4.0.1" and cap["url"] == peer.base_url
    found = call_one(trusted, "fhir_search_patient", {"family": "Nobody"})
    assert found["returned"] == 0

    untrusted = fhir_services({"tls": peer.server_config(retries=0)}, current="tls")
    err = call_error(untrusted, "verify_fhir_connection")
    assert err["code"] == ErrorCode.FHIR_CONNECTION_ERROR and "ca_bundle" in err["message"]
