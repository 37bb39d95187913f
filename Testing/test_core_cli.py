"""The `slicer-mcp` command line: options in any position, clear failures, stdout kept clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slicer_mcp.cli import build_parser, with_default_command


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "C", "serve"],
        ["serve", "--config", "C"],
        ["ris", "serve", "--config", "C"],
        ["fhir", "--config", "C", "check"],
    ],
)
def test_config_option_works_before_and_after_commands(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).config == "C"


def test_serve_is_the_default_command() -> None:
    args = build_parser().parse_args(with_default_command(["-v", "--headless"]))
    assert args.command == "serve" and args.headless and args.verbose


def test_bad_config_fails_with_the_key_and_exit_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: not-a-port\n")
    proc = subprocess.run(
        [sys.executable, "-m", "slicer_mcp", "serve", "--headless", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert "server.port" in proc.stderr
    assert proc.stdout == ""  # stdout belongs to the MCP protocol


def test_non_loopback_host_is_refused_without_allow_remote() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "slicer_mcp",
            "serve",
            "--headless",
            "--transport",
            "http",
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert "allow_remote" in proc.stderr
