"""`slicer-mcp` with serve options but no command means `slicer-mcp serve ...` (what MCP clients run)."""

from __future__ import annotations

import pytest

from slicer_mcp.cli import with_default_command


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], []),
        (["--headless"], ["serve", "--headless"]),
        (
            ["--config", "c.yaml", "--backend", "webserver"],
            ["--config", "c.yaml", "serve", "--backend", "webserver"],
        ),
        (
            ["-v", "--webserver-url", "http://localhost:2017"],
            ["-v", "serve", "--webserver-url", "http://localhost:2017"],
        ),
        (["serve", "--headless"], ["serve", "--headless"]),
        (["fhir", "--help"], ["fhir", "--help"]),
        (["--version"], ["--version"]),
    ],
)
def test_serve_is_the_default_command(argv: list[str], expected: list[str]) -> None:
    assert with_default_command(argv) == expected
