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


def _retry_in(b: CircuitBreaker, clock: Clock) -> float:
    """Seconds from the clock to the announced retry_at (whole seconds: the clock is whole)."""
    from datetime import datetime

    return datetime.fromisoformat(b.status().retry_at).timestamp() - clock.now


def test_cooldown_starts_short_doubles_per_failed_probe_and_is_capped():
    """First opening 1 s, each failed probe doubles it up to cooldown_s; a success starts again."""
    port, clock = _free_port(), Clock()  # nothing listens: every call is refused
    b = CircuitBreaker("p", BreakerConfig(failure_threshold=1, first_cooldown_s=1, cooldown_s=5), clock=clock)
    cooldowns = []
    for _ in range(5):
        with pytest.raises(ConnectionRefusedError):  # the first call, then each probe, reaches the port
            b.call(lambda: _connect(port), (OSError,))
        cooldowns.append(_retry_in(b, clock))
        with pytest.raises(CircuitOpen):  # until retry_at calls fail fast
            b.call(lambda: _connect(port), (OSError,))
        clock.now += cooldowns[-1]
    assert cooldowns == [1, 2, 4, 5, 5]
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert b.call(lambda: _connect(port), (OSError,)) == "ok"
    with pytest.raises(ConnectionRefusedError):
        b.call(lambda: _connect(port), (OSError,))
    assert _retry_in(b, clock) == 1  # closed in between: short again


def test_a_restarted_peer_is_called_again_before_the_cooldown_ends():
    """The breaker looks at the peer's port: refused while it is down, accepting once it is back;
    then the next call is the probe, long before a 60 s cool-down ends."""
    from SlicerMCPLib.core.breaker import CHECK_EVERY_S

    port, clock = _free_port(), Clock()
    settings = BreakerConfig(failure_threshold=2, first_cooldown_s=60, cooldown_s=60)
    b = CircuitBreaker("p", settings, clock=clock, address=("127.0.0.1", port))
    for _ in range(2):
        with pytest.raises(ConnectionRefusedError):
            b.call(lambda: _connect(port), (OSError,))
    for _ in range(3):  # still down: each look finds the port closed
        with pytest.raises(CircuitOpen):
            b.call(lambda: _connect(port), (OSError,))
        clock.now += CHECK_EVERY_S
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert b.call(lambda: _connect(port), (OSError,)) == "ok"
    assert b.status().state == "closed"


def test_a_hung_peer_whose_port_accepts_waits_for_the_cooldown():
    """A listener that never answers: the calls time out (they count), the port accepts all along,
    so the look never lets a probe go early; only the cool-down does."""
    from SlicerMCPLib.core.breaker import CHECK_EVERY_S

    clock = Clock()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        port = server.getsockname()[1]

        def ask() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=0.05) as s:
                return s.recv(1)  # nothing comes: TimeoutError, an OSError

        settings = BreakerConfig(failure_threshold=2, first_cooldown_s=10, cooldown_s=10)
        b = CircuitBreaker("hung", settings, clock=clock, address=("127.0.0.1", port))
        for _ in range(2):
            with pytest.raises(TimeoutError):
                b.call(ask, (OSError,))
        for _ in range(5):
            with pytest.raises(CircuitOpen):
                b.call(ask, (OSError,))
            clock.now += CHECK_EVERY_S
        clock.now += 10
        with pytest.raises(TimeoutError):  # the probe after the cool-down
            b.call(ask, (OSError,))
        assert b.status().state == "open"


def test_peers_get_their_address_and_the_ris_database_its_own_cap():
    from SlicerMCPLib.core.breaker import url_address
    from SlicerMCPLib.core.domain_config import MiniRisSettings
    from SlicerMCPLib.ris.db import database_breaker

    assert url_address("https://fhir.example/r4") == ("fhir.example", 443)
    assert url_address("http://127.0.0.1:8080/fhir") == ("127.0.0.1", 8080)
    assert url_address("file:///x") is None
    ris = database_breaker(
        MiniRisSettings(backend="mysql", host="127.0.0.1", port=3307),
        BreakerConfig(cooldown_s=60, ris_database_cooldown_s=4),
    )
    assert ris.settings.cooldown_s == 4 and ris.settings.first_cooldown_s == 1
