"""Circuit breaker against a real TCP peer: a port that refuses, then a listener that comes back.

The peer is a plain loopback socket (connection refused is a real kernel answer, not a fake);
the cool-down is driven by an injected clock so no test waits on wall time.
"""

import socket

import pytest

from SlicerMCPLib.core.breaker import BreakerRegistry, CircuitBreaker
from SlicerMCPLib.core.config import BreakerConfig
from SlicerMCPLib.core.errors import CircuitOpen, ErrorCode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return "ok"


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_fails_fast_then_probe_closes():
    port, clock = _free_port(), Clock()
    b = CircuitBreaker("test-peer", BreakerConfig(failure_threshold=3, cooldown_s=30), clock=clock)
    for _ in range(3):
        with pytest.raises(ConnectionRefusedError):
            b.call(lambda: _connect(port), (OSError,))
    assert b.status().state == "open"
    with pytest.raises(CircuitOpen) as exc:
        b.call(lambda: _connect(port), (OSError,))
    assert exc.value.code == ErrorCode.CIRCUIT_OPEN
    assert "test-peer" in exc.value.message and exc.value.details["retry_at"]
    # the peer comes back; after the cool-down one probe is let through and closes the breaker
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        with pytest.raises(CircuitOpen):
            b.call(lambda: _connect(port), (OSError,))
        clock.now += 31
        assert b.call(lambda: _connect(port), (OSError,)) == "ok"
    st = b.status()
    assert (st.state, st.failures, st.retry_at) == ("closed", 0, None)


def test_failed_probe_reopens_and_application_errors_do_not_count():
    port, clock = _free_port(), Clock()
    b = CircuitBreaker("p", BreakerConfig(failure_threshold=2, cooldown_s=5), clock=clock)

    def app_error():
        raise KeyError("no match")  # the peer answered: not a connection failure

    for _ in range(5):
        with pytest.raises(KeyError):
            b.call(app_error, (OSError,))
    assert b.status().state == "closed"
    for _ in range(2):
        with pytest.raises(OSError):
            b.call(lambda: _connect(port), (OSError,))
    clock.now += 6
    with pytest.raises(OSError):  # the half-open probe fails: open again at once
        b.call(lambda: _connect(port), (OSError,))
    assert b.status().state == "open"
    with pytest.raises(CircuitOpen):
        b.call(lambda: _connect(port), (OSError,))


def test_registry_shares_one_breaker_per_peer():
    reg = BreakerRegistry(BreakerConfig(failure_threshold=1))
    assert reg.get("orthanc") is reg.get("orthanc")
    reg.get("orthanc").record_failure()
    reg.get("fhir")
    assert {s.peer: s.state for s in reg.statuses()} == {"orthanc": "open", "fhir": "closed"}


def test_fhir_client_fails_fast_after_refused_connections():
    from SlicerMCPLib.core.domain_config import FhirServer
    from SlicerMCPLib.fhir.client import FhirClient

    port = _free_port()  # nothing listens: the kernel refuses, a real connection failure
    client = FhirClient("down", FhirServer(url=f"http://127.0.0.1:{port}/fhir", retries=0))
    codes = []
    for _ in range(4):
        with pytest.raises(Exception) as exc:
            client.request("GET", "Patient")
        codes.append(str(exc.value.code))
    assert codes == ["FHIR_CONNECTION_ERROR"] * 3 + ["CIRCUIT_OPEN"]
    assert "'down'" in client.breaker.status().peer


def test_fhir_service_breakers_take_the_configured_threshold() -> None:
    """breaker.failure_threshold from the config reaches each FHIR server's breaker."""
    from SlicerMCPLib.core.config import load_config
    from SlicerMCPLib.fhir.service import FhirService

    port = _free_port()  # nothing listens: refused
    config = load_config(
        None,
        env={},
        overrides={
            "fhir_servers": {"down": {"url": f"http://127.0.0.1:{port}/fhir", "retries": 0}},
            "breaker": {"failure_threshold": 1, "cooldown_s": 60},
        },
    )
    client = FhirService(config).client("down")
    codes = []
    for _ in range(2):
        with pytest.raises(Exception) as exc:
            client.request("GET", "metadata")
        codes.append(str(exc.value.code))
    assert codes == ["FHIR_CONNECTION_ERROR", "CIRCUIT_OPEN"]  # open after one failure, not the default three
