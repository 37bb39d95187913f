"""The config layers (defaults -> YAML -> env -> CLI), dicom-mcp compatibility, clear failures."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from SlicerMCPLib.core.config import load_config
from SlicerMCPLib.core.errors import ConfigError, ErrorCode
from SlicerMCPLib.serving.auth import load_or_create_token

DICOM_MCP_YAML = """\
nodes:
  main:
    host: "localhost"
    port: 4242
    ae_title: "ORTHANC"
    description: "Local Orthanc DICOM server"
  research:
    host: "pacs.example.org"
    port: 104
    ae_title: "RESEARCH"
current_node: "main"
calling_aet: "MCPSCU"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_defaults_are_safe() -> None:
    cfg = load_config(env={})
    assert cfg.server.host == "127.0.0.1"
    assert not any(cfg.allow.model_dump().values())


def test_dicom_mcp_config_loads_unchanged(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, DICOM_MCP_YAML), env={})
    assert cfg.current_node == "main"
    assert cfg.nodes["main"].ae_title == "ORTHANC"
    assert cfg.nodes["research"].port == 104
    assert cfg.calling_aet == "MCPSCU"


def test_env_substitution_and_missing_variable(tmp_path: Path) -> None:
    text = "fhir_servers:\n  main:\n    url: http://127.0.0.1:9/fhir\n    bearer_token: ${FHIR_TOKEN}\n"
    cfg = load_config(write(tmp_path, text), env={"FHIR_TOKEN": "s3cret"})
    assert cfg.fhir_servers["main"].bearer_token.get_secret_value() == "s3cret"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert "FHIR_TOKEN" in info.value.message
    assert "fhir_servers.main.bearer_token" in info.value.message


def test_bad_key_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            write(tmp_path, "nodes:\n  main:\n    host: h\n    port: 99999\n    ae_title: A\n"), env={}
        )
    assert info.value.code == ErrorCode.CONFIG_ERROR
    assert "nodes.main.port" in info.value.message
    with pytest.raises(ConfigError, match="allow.run_anything"):
        load_config(write(tmp_path, "allow:\n  run_anything: true\n"), env={})
    with pytest.raises(ConfigError, match="current_node"):
        load_config(write(tmp_path, "current_node: nowhere\n"), env={})


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "nodes: [unclosed\n"), env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", env={})


def test_non_loopback_bind_needs_explicit_permission() -> None:
    with pytest.raises(ConfigError, match="allow_remote"):
        load_config(env={}, overrides={"server": {"host": "0.0.0.0"}})
    cfg = load_config(env={}, overrides={"server": {"host": "0.0.0.0", "allow_remote": True}})
    assert cfg.server.host == "0.0.0.0"


def test_layers_override_in_order(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 3000\nallow:\n  fhir_write: true\n")
    env = {
        "SLICER_MCP_CONFIG": str(path),
        "SLICER_MCP_PORT": "3001",
        "SLICER_MCP_ALLOW_EXECUTE_PYTHON": "yes",
    }
    cfg = load_config(env=env)
    assert cfg.server.port == 3001  # env beats YAML
    assert cfg.allow.fhir_write and cfg.allow.execute_python
    cfg = load_config(env=env, overrides={"server": {"port": 3002}})
    assert cfg.server.port == 3002  # CLI beats env
    with pytest.raises(ConfigError, match="SLICER_MCP_ALLOW_DICOM_SEND"):
        load_config(env={"SLICER_MCP_ALLOW_DICOM_SEND": "maybe"})


def test_dicom_hl7_switch_enables_move_only() -> None:
    cfg = load_config(env={"DICOM_HL7_PACS_ALLOW_RETRIEVE": "true"})
    assert cfg.allow.dicom_move
    assert not cfg.allow.dicom_send


def test_token_file_is_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "token"
    token = load_or_create_token(path)
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_token(path) == token
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_token(path)


def test_servers_starting_together_share_one_token(tmp_path) -> None:
    """Slicer's module and `slicer-mcp serve` may both create the token on first use at the same moment."""
    import threading

    path = tmp_path / "together" / "token"
    barrier = threading.Barrier(16)
    tokens: list[str] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            tokens.append(load_or_create_token(path))
        except BaseException as exc:  # reported below
            errors.append(exc)

    for _ in range(20):  # the race window is narrow: try a few rounds
        path.unlink(missing_ok=True)
        tokens.clear()
        threads = [threading.Thread(target=start) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        assert len(set(tokens)) == 1 and path.read_text().strip() == tokens[0]


def test_yaml_error_names_the_place_but_never_prints_the_line(tmp_path: Path) -> None:
    """PyYAML quotes the offending line; in a config that line may hold a password."""
    bad = write(
        tmp_path, 'fhir_servers:\n  main:\n    base_url: "https://fhir.local"\n    password: "s3cret\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(bad, env={})
    assert "s3cret" not in info.value.message and "s3cret" not in info.value.to_json()
    assert "line" in info.value.message and "not valid YAML" in info.value.message


def test_private_files_replace_or_keep(tmp_path: Path) -> None:
    from SlicerMCPLib.core.localhost import write_private_file

    path = tmp_path / "d" / "f"
    assert write_private_file(path, "one")
    assert write_private_file(path, "two")  # replaced atomically
    assert path.read_text() == "two\n"
    assert not write_private_file(path, "three", keep_existing=True)  # the first writer wins
    assert path.read_text() == "two\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["f"]  # no temp files left behind


def test_configuration_reference_is_current() -> None:
    """docs/configuration.md is generated from the models: regenerate it when a setting changes."""
    import importlib.util

    from fixtures.core import PROJECT_ROOT

    spec = importlib.util.spec_from_file_location(
        "config_reference", PROJECT_ROOT / "scripts/config_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = (PROJECT_ROOT / "docs/configuration.md").read_text(encoding="utf-8")
    assert current == module.render(), "run: .venv/bin/python scripts/config_reference.py"
    assert "`allow.execute_python`" in current and "`nodes.<name>.ae_title`" in current


def test_generic_environment_variables_set_any_key_and_say_where_values_came_from(tmp_path: Path) -> None:
    """SLICER_MCP__SECTION__KEY reaches any setting; errors and sources() name the layer that set it."""
    path = tmp_path / "config.yaml"
    path.write_text("nodes:\n  Orthanc: {host: 127.0.0.1, port: 4242, ae_title: ORTHANC}\n", encoding="utf-8")
    env = {
        "SLICER_MCP__MINI_RIS__MWL_PORT": "11113",
        "SLICER_MCP__NODES__ORTHANC__PORT": "4343",  # the file's node, whatever its case
        "SLICER_MCP__SERVER__ALLOWED_ORIGINS": '["http://localhost:3000"]',
    }
    cfg = load_config(path, env=env)
    assert cfg.mini_ris.mwl_port == 11113
    assert cfg.nodes["Orthanc"].port == 4343 and set(cfg.nodes) == {"Orthanc"}
    assert cfg.server.allowed_origins == ["http://localhost:3000"]
    assert cfg.sources()["mini_ris.mwl_port"] == "environment SLICER_MCP__MINI_RIS__MWL_PORT"
    assert cfg.sources()["nodes.Orthanc.host"] == f"file {path}"
    assert "server.port" not in cfg.sources()  # left at its default

    with pytest.raises(ConfigError) as bad:
        load_config(path, env={"SLICER_MCP__SERVER__PORT": "99999"})
    assert "server.port" in bad.value.message and "SLICER_MCP__SERVER__PORT" in bad.value.message
    assert bad.value.details["source"] == "environment SLICER_MCP__SERVER__PORT"
    with pytest.raises(ConfigError, match="two underscores"):
        load_config(None, env={"SLICER_MCP__SERVER____PORT": "1"})
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(None, env={"SLICER_MCP__SERVER__ALLOWED_ORIGINS": "[oops"})


def test_secrets_never_show_when_the_config_is_printed_or_dumped(tmp_path: Path) -> None:
    """FHIR tokens and keys, the RIS password and the generator key are SecretStr: repr, str, JSON
    dumps and the status listing show stars; the code that sends one still gets the value."""
    path = tmp_path / "slicer-mcp.yaml"
    path.write_text(
        "fhir_servers:\n  main:\n    url: https://fhir.example.org/r4\n    bearer_token: tok-7f3a9\n"
        "    api_key: key-51c2e\n"
        "mini_ris:\n  backend: mysql\n  password: pw-0d8e4\n  modality:\n    ai_api_key: ai-93b7f\n"
    )
    cfg = load_config(path)
    secrets = ("tok-7f3a9", "key-51c2e", "pw-0d8e4", "ai-93b7f")
    shown = [
        repr(cfg),
        str(cfg),
        cfg.model_dump_json(),
        str(cfg.model_dump()),
        repr(cfg.fhir_servers["main"]),
    ]
    for text in shown:
        assert not any(secret in text for secret in secrets), text
    main = cfg.fhir_servers["main"]
    assert main.bearer_token is not None and main.bearer_token.get_secret_value() == "tok-7f3a9"
    assert main.auth_kind == "bearer"
    from SlicerMCPLib.fhir.client import FhirClient

    client = FhirClient("main", main)
    assert client.session.headers["Authorization"] == "Bearer tok-7f3a9"
    assert client.session.headers["X-API-Key"] == "key-51c2e"
