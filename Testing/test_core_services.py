"""The lifecycle of `Services`: the host enters them once and leaving closes everything once;
and PHI-safe logging is switched on by the hosts, never by an import."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from SlicerMCPLib.core.config import load_config
from SlicerMCPLib.core.services import Services, hosted
from SlicerMCPLib.serving.server import build_server


class CountingBackend:
    """Stands in for a scene backend: Services' lifecycle is under test, not a scene's."""

    kind = "counting"

    def __init__(self) -> None:
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1


class CountingDomain:
    def __init__(self, fail: bool = False) -> None:
        self.closed = 0
        self.fail = fail

    def close(self) -> None:
        self.closed += 1
        if self.fail:
            raise OSError("socket already gone")


class FailingDomain(CountingDomain):
    """A second kind of domain service (one per kind), whose close fails."""


def test_one_service_per_kind_made_from_the_config_on_first_use() -> None:
    services, _ = _services()
    made = []

    class Kind:
        def __init__(self, config: object) -> None:
            made.append(config)

    first = services.domain(Kind)
    assert services.domain(Kind) is first and made == [services.config]


def _services() -> tuple[Services, CountingBackend]:
    backend = CountingBackend()
    return Services(config=load_config(None, env={}), backend=backend), backend  # type: ignore[arg-type]


def test_async_with_closes_every_domain_and_the_backend_once() -> None:
    services, backend = _services()

    async def host() -> tuple[CountingDomain, CountingDomain]:
        async with services as entered:
            assert entered is services
            broken = entered.domain(FailingDomain, lambda _: FailingDomain(fail=True))
            fine = entered.domain(CountingDomain, lambda _: CountingDomain())
            await services.close()  # someone closes early: the exit must not close again
        await services.close()
        return broken, fine

    broken, fine = asyncio.run(host())
    assert (broken.closed, fine.closed, backend.closed) == (1, 1, 1)  # a failing close leaks no other
    assert services.closed


def test_closed_services_make_no_new_domain_service_and_cannot_be_entered_again() -> None:
    services, _ = _services()
    with hosted(services):
        pass
    with pytest.raises(RuntimeError, match="closed"):
        services.domain(CountingDomain, lambda _: CountingDomain())
    with pytest.raises(RuntimeError, match="builds new ones"):
        asyncio.run(services.__aenter__())


def test_hosted_closes_once_when_the_host_fails() -> None:
    services, backend = _services()
    domain = services.domain(CountingDomain, lambda _: CountingDomain())
    with pytest.raises(ValueError), hosted(services):
        raise ValueError("transport failed")
    assert (domain.closed, backend.closed) == (1, 1)


def test_the_mcp_lifespan_hands_the_services_over_without_closing_them() -> None:
    """A client session ending (the SDK's lifespan exits) must not close what the host owns."""
    from mcp.client import Client

    services, backend = _services()
    server = build_server(services)

    async def two_sessions() -> None:
        for _ in range(2):
            async with Client(server) as client:
                await client.list_tools()

    with hosted(services):
        asyncio.run(two_sessions())
        assert backend.closed == 0 and not services.closed
    assert backend.closed == 1


PHI_SWITCHES = """
import logging
from pydicom import config as pydicom_config
from pynetdicom import _config as pynetdicom_config

def switches():
    return (
        pynetdicom_config.LOG_REQUEST_IDENTIFIERS,
        pynetdicom_config.LOG_RESPONSE_IDENTIFIERS,
        logging.getLogger("pynetdicom").level,
        pydicom_config.settings.reading_validation_mode == pydicom_config.IGNORE,
    )
"""


def _fresh(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PHI_SWITCHES) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_no_import_switches_phi_logging_the_slicer_mcp_host_does() -> None:
    said = _fresh(
        """
        import SlicerMCPLib.dicom.associations, SlicerMCPLib.ris.scp, SlicerMCPLib.tools, SlicerMCPLib.hosts.headless
        before = switches()
        from slicer_mcp.cli import setup_logging
        setup_logging(False)
        print(before, switches())
        """
    )
    assert said == f"(True, True, 0, False) (False, False, {30}, True)"


def test_the_in_slicer_controller_switches_phi_logging_off_where_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pynetdicom import _config as pynetdicom_config

    from SlicerMCPLib.hosts.inslicer import ServerController

    monkeypatch.setattr(pynetdicom_config, "LOG_REQUEST_IDENTIFIERS", True)
    backend: Any = CountingBackend()
    controller = ServerController(backend_factory=lambda gateway, config: backend, driver_factory=_Driver)
    controller.call_tool("get_attribute_presets")  # builds the scene side, as start() does
    assert pynetdicom_config.LOG_REQUEST_IDENTIFIERS is False
    controller.stop()
    assert backend.closed == 1


class _Driver:
    """A driver that drains nothing: the controller's lifecycle is under test, not Qt."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def wake(self) -> None:
        pass
