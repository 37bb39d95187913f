"""One typed config: defaults -> YAML file -> environment -> command line.

The YAML keeps the dicom-mcp shape (`nodes`, `current_node`, `calling_aet`,
`fhir_servers`, `mini_ris`) so existing files load. A bad file fails with the key
and the reason (CONFIG_ERROR).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from .domain_config import DicomNode, FhirServer, MiniRisSettings, StorageScpSettings
from .errors import ConfigError
from .localhost import LOOPBACK_HOSTS

ALLOW_KEYS = ("execute_python", "dicom_move", "dicom_send", "fhir_write", "ris_write")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class AllowSettings(BaseModel):
    """The operations that change the world outside the scene or run code: all off by default."""

    model_config = ConfigDict(extra="forbid")

    execute_python: bool = Field(
        default=False, description="execute_python: run any Python code inside Slicer"
    )
    dicom_move: bool = Field(default=False, description="move_series / move_study: C-MOVE to another node")
    dicom_send: bool = Field(default=False, description="send_to_pacs (and CR images to the PACS): C-STORE")
    fhir_write: bool = Field(default=False, description="fhir_create_resource, fhir_update_resource, ...")
    ris_write: bool = Field(
        default=False, description="orders, worklist entries, the virtual CR, REST writes"
    )
    confirm_with_person: bool = Field(
        default=False,
        description="a gated operation that is off asks the person through the client (MCP elicitation) "
        "and runs once if they accept",
    )


class ServerSettings(BaseModel):
    """The MCP HTTP listener."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="HTTP listen address (loopback unless allow_remote)")
    port: int = Field(default=2026, ge=0, le=65535, description="HTTP port; 0 picks a free one")
    allow_remote: bool = Field(default=False, description="must be true to bind a non-loopback address")
    token_file: str | None = Field(default=None, description="default: <user config dir>/token")
    allowed_origins: list[str] = Field(
        default_factory=list, description="browser Origins allowed besides loopback"
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="seconds a connection may take to send a request's headers"
    )
    body_timeout_s: float = Field(default=30.0, gt=0, description="seconds to send a request's body")
    keep_alive_s: float = Field(
        default=5.0, gt=0, description="seconds an idle kept-alive connection stays open"
    )
    max_connections: int = Field(
        default=200, ge=2, description="open connections; beyond it the longest-idle one is closed"
    )
    max_in_flight_per_client: int = Field(
        default=32, ge=1, description="requests one client (session or connection) may have in progress"
    )

    @model_validator(mode="after")
    def _loopback_unless_asked(self) -> ServerSettings:
        if self.host not in LOOPBACK_HOSTS and not self.allow_remote:
            raise ValueError(
                f"refusing to listen on {self.host!r}: only loopback is allowed unless server.allow_remote is true"
            )
        return self


class SampleDataSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        default="https://github.com/Slicer/SlicerTestingData/releases/download",
        description="content-addressed store: <base_url>/SHA256/<sha256>",
    )
    mirror_dir: str | None = Field(
        default=None, description="local folder of files named by sha256 (offline use)"
    )
    cache_dir: str | None = Field(default=None, description="default: <user data dir>/sample-data")
    timeout_s: float = Field(default=60.0, gt=0, description="download timeout in seconds")


class TimeoutSettings(BaseModel):
    """Seconds a call may take, per kind of work (scene calls: waiting for the main thread)."""

    model_config = ConfigDict(extra="forbid")

    scene_s: float = Field(
        default=30.0, gt=0, description="seconds a scene call may wait for the main thread"
    )
    screenshot_s: float = Field(default=60.0, gt=0, description="seconds for a render")
    load_s: float = Field(default=300.0, gt=0, description="seconds for loading files, samples, volumes")
    python_s: float = Field(default=120.0, gt=0, description="seconds for one execute_python call")
    fhir_call_s: float = Field(
        default=120.0,
        gt=0,
        description="seconds one FHIR tool call may take in all: every page, retry and wait "
        "(each request also has its server's timeout_s)",
    )
    confirm_s: float = Field(
        default=300.0,
        gt=0,
        description="seconds the person has to answer a confirmation (allow.confirm_with_person)",
    )


class LimitSettings(BaseModel):
    """What one file or one piece of code may cost the process (None: sized for this machine)."""

    model_config = ConfigDict(extra="forbid")

    max_volume_bytes: int | None = Field(
        default=None, gt=0, description="largest voxel size x type a file may declare; default: 1/4 of RAM"
    )
    python_memory_bytes: int | None = Field(
        default=None,
        gt=0,
        description="resident memory one execute_python call may add before it is stopped; default: 1/4 of RAM",
    )
    python_stop_grace_s: float = Field(
        default=5.0, gt=0, description="seconds stopped code gets to unwind; SIGTERM exits after as long"
    )

    def volume_bytes(self) -> int:
        return self.max_volume_bytes or quarter_of_memory()

    def python_bytes(self) -> int:
        return self.python_memory_bytes or quarter_of_memory()


def quarter_of_memory() -> int:
    """A quarter of this machine's memory (2 GiB where that cannot be read): a load holds the voxels
    in the reader and in the scene at once, and the rest of the machine keeps working."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 2 << 30
    return max(256 << 20, total // 4)


class RenderingSettings(BaseModel):
    """How screenshots share the scene with other clients and fit into one MCP message."""

    model_config = ConfigDict(extra="forbid")

    queue_per_client: int = Field(
        default=8, ge=1, description="renders one client may have queued or running; more are refused BUSY"
    )
    max_image_bytes: int = Field(
        default=700_000,
        ge=10_000,
        description="largest image sent (base64 adds a third: 700 kB stays under the 1 MiB SSE event "
        "of the MCP Python client); larger ones are re-encoded as JPEG, then scaled down",
    )


class BreakerConfig(BaseModel):
    """When a peer (WebServer, DICOM node, FHIR server, RIS database) is treated as down."""

    model_config = ConfigDict(extra="forbid")

    failure_threshold: int = Field(
        default=3, ge=1, description="consecutive connection failures that open a peer's breaker"
    )
    first_cooldown_s: float = Field(
        default=1.0,
        gt=0,
        description="seconds a breaker stays open the first time; each failed probe doubles it, up to cooldown_s",
    )
    cooldown_s: float = Field(
        default=30.0,
        gt=0,
        description="longest time an open breaker fails fast before one probe call is let through",
    )
    ris_database_cooldown_s: float = Field(
        default=5.0,
        gt=0,
        description="cooldown_s for the RIS database (a local server that restarts in seconds)",
    )

    def for_ris_database(self) -> BreakerConfig:
        """These settings with the RIS database's cap on the cool-down."""
        return self.model_copy(update={"cooldown_s": self.ris_database_cooldown_s})


class AuditSettings(BaseModel):
    """The audit log: one JSON line per tool call (no arguments, no results), rotated by size."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="write the audit log")
    path: str | None = Field(
        default=None,
        description="the log file (0600, folder 0700); default: <user data dir>/audit/tool-calls.jsonl",
    )
    max_bytes: int = Field(
        default=10_000_000, ge=10_000, description="size at which the file is rotated to <path>.1"
    )
    backups: int = Field(default=5, ge=1, le=100, description="rotated files kept (<path>.1 ... <path>.N)")
    recent_lines: int = Field(default=100, ge=1, le=10_000, description="lines slicer://audit shows")


class Config(BaseModel):
    """Everything the server reads from the outside world, validated in one place."""

    model_config = ConfigDict(extra="forbid")
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    def sources(self) -> dict[str, str]:
        """Each setting not left at its default (e.g. `mini_ris.mwl_port`) -> where it came from:
        'file PATH', 'environment NAME', 'environment' or 'command line'. Values are not included,
        so secrets stay out: this is what `slicer://status` shows."""
        keys = sorted(self._sources)
        return {k: self._sources[k] for k in keys if not any(o.startswith(k + ".") for o in keys)}

    server: ServerSettings = Field(default_factory=ServerSettings)
    allow: AllowSettings = Field(default_factory=AllowSettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    rendering: RenderingSettings = Field(default_factory=RenderingSettings)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    sample_data: SampleDataSettings = Field(default_factory=SampleDataSettings)
    webserver_url: str = Field(
        default="http://localhost:2016", description="Slicer's WebServer, for slicer-mcp"
    )
    webserver_poll_s: float = Field(
        default=1.0,
        ge=0.1,
        description="seconds between looks at the scene through Slicer's WebServer for changes, while a "
        "client subscribes to a scene resource (each look is a few requests on Slicer's main thread)",
    )
    # dicom-mcp shape
    nodes: dict[str, DicomNode] = Field(default_factory=dict, description="DICOM nodes by name (below)")
    current_node: str | None = Field(default=None, description="the node DICOM tools use by default")
    calling_aet: str = Field(
        default="SLICERMCP", min_length=1, max_length=16, description="our AE title as SCU"
    )
    storage_scp: StorageScpSettings = Field(default_factory=StorageScpSettings)
    dicom_storage_dir: str | None = Field(
        default=None, description="where retrieved instances go (default: temp)"
    )
    fhir_servers: dict[str, FhirServer] = Field(
        default_factory=dict, description="FHIR servers by name (below)"
    )
    current_fhir: str | None = Field(default=None, description="the server FHIR tools use by default")
    mini_ris: MiniRisSettings = Field(default_factory=MiniRisSettings)

    @model_validator(mode="after")
    def _current_names_exist(self) -> Config:
        if self.current_node is not None and self.current_node not in self.nodes:
            raise ValueError(f"current_node {self.current_node!r} is not one of nodes: {sorted(self.nodes)}")
        if self.current_fhir is not None and self.current_fhir not in self.fhir_servers:
            raise ValueError(
                f"current_fhir {self.current_fhir!r} is not one of fhir_servers: {sorted(self.fhir_servers)}"
            )
        return self


def _substitute_env(value: Any, env: Mapping[str, str], where: str = "") -> Any:
    """Replace `${NAME}` and `${NAME:-default}` in strings; an unset name without default is an error."""
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"config key {where or '<root>'}: environment variable {name} is not set "
                "(set it in the environment or in a .env file beside the config)",
                details={"key": where, "variable": name},
            )

        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute_env(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_env(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _parse_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(
        f"environment variable {name}={raw!r} is not a boolean (use true or false)", details={"env": name}
    )


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """The environment layer: allow switches, listener and WebServer settings."""
    out: dict[str, Any] = {}
    allow: dict[str, bool] = {}
    legacy = env.get("DICOM_HL7_PACS_ALLOW_RETRIEVE")
    if legacy is not None and _parse_bool("DICOM_HL7_PACS_ALLOW_RETRIEVE", legacy):
        allow["dicom_move"] = True
    for key in (*ALLOW_KEYS, "confirm_with_person"):
        name = f"SLICER_MCP_ALLOW_{key.upper()}"
        if name in env:
            allow[key] = _parse_bool(name, env[name])
    if allow:
        out["allow"] = allow
    server: dict[str, Any] = {}
    if "SLICER_MCP_HOST" in env:
        server["host"] = env["SLICER_MCP_HOST"]
    if "SLICER_MCP_PORT" in env:
        server["port"] = env["SLICER_MCP_PORT"]
    if "SLICER_MCP_TOKEN_FILE" in env:
        server["token_file"] = env["SLICER_MCP_TOKEN_FILE"]
    if server:
        out["server"] = server
    if "SLICER_MCP_WEBSERVER_URL" in env:
        out["webserver_url"] = env["SLICER_MCP_WEBSERVER_URL"]
    return out


GENERIC_ENV_PREFIX = "SLICER_MCP__"


def _generic_env(env: Mapping[str, str], data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """`SLICER_MCP__MINI_RIS__MWL_PORT=11112` sets `mini_ris.mwl_port`: any key, `__` between levels.

    Levels match the keys already in `data` regardless of case (a node named `Orthanc` in the file
    is `SLICER_MCP__NODES__ORTHANC__PORT`), else are lower-cased. A value starting with `[` or `{`
    is read as JSON (lists, mappings); any other stays text for the model to convert. Returns the
    layer and, for each key it sets, the variable that set it."""
    layer: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in sorted(env):
        if not name.startswith(GENERIC_ENV_PREFIX):
            continue
        parts = name[len(GENERIC_ENV_PREFIX) :].split("__")
        if not all(parts):
            raise ConfigError(
                f"environment variable {name}: levels are separated by exactly two underscores, "
                "e.g. SLICER_MCP__MINI_RIS__MWL_PORT",
                details={"env": name},
            )
        raw = env[name]
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except ValueError:
                raise ConfigError(
                    f"environment variable {name} starts like JSON but is not valid JSON",
                    details={"env": name},
                ) from None
        keys: list[str] = []
        known: Any = data
        target = layer
        for i, part in enumerate(parts):
            existing = known if isinstance(known, Mapping) else {}
            key = next((k for k in existing if str(k).lower() == part.lower()), part.lower())
            keys.append(str(key))
            known = existing.get(key)
            if i == len(parts) - 1:
                target[key] = value
            else:
                target = target.setdefault(key, {})
        sources[".".join(keys)] = f"environment {name}"
    return layer, sources


def _sources_of(data: Mapping[str, Any], origin: str, prefix: str = "") -> dict[str, str]:
    """Every key path in `data` (mappings walked, lists and values are leaves) -> `origin`."""
    out: dict[str, str] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out[path] = origin
        if isinstance(value, Mapping):
            out.update(_sources_of(value, origin, path))
    return out


def _source_for(sources: Mapping[str, str], key: str) -> str | None:
    """Where the value at `key` (or the nearest enclosing key that was set) came from."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        found = sources.get(".".join(parts[:n]))
        if found:
            return found
    return None


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror}", details={"path": str(path)}
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # name the place, but not PyYAML's quote of the line: it may hold a password
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(
            f"config file {path} is not valid YAML: {problem}{where}",
            details={"path": str(path), "line": mark.line + 1 if mark is not None else None},
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping at the top level", details={"path": str(path)}
        )
    return data


def read_dotenv(path: Path) -> dict[str, str]:
    """`NAME=value` lines of a .env file (as `dotenv run` reads them): `export`, quotes and comments allowed.

    A line that is not an assignment fails naming its number only: the line may hold a secret.
    """
    values: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", details={"path": str(path)}) from exc
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(
                f"{path} line {number} is not NAME=value", details={"path": str(path), "line": number}
            )
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the config from its layers; `path` defaults to `$SLICER_MCP_CONFIG` when set.

    `${NAME}` in the file is taken from `env` (default: the environment), else from a `.env`
    file beside the config, as dicom-mcp users keep their secrets.
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    source = path or env.get("SLICER_MCP_CONFIG")
    if source:
        dotenv = Path(source).with_name(".env")
        names = {**read_dotenv(dotenv), **env} if dotenv.is_file() else env  # the environment wins
        data = _substitute_env(_read_yaml(Path(source)), names)
        sources.update(_sources_of(data, f"file {source}"))
    named = _env_overrides(env)
    data = _deep_merge(data, named)
    sources.update(_sources_of(named, "environment"))
    generic, generic_sources = _generic_env(env, data)
    data = _deep_merge(data, generic)
    sources.update(generic_sources)
    if overrides:
        data = _deep_merge(data, overrides)
        sources.update(_sources_of(overrides, "command line"))
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "<root>"
        origin = _source_for(sources, key)
        raise ConfigError(
            f"config key {key}: {first['msg']}" + (f" (set by {origin})" if origin else " (the default)"),
            details={
                "key": key,
                "source": origin or "default",
                "problems": [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()],
            },
        ) from exc
    config._sources = sources  # noqa: SLF001 - recorded where the config is built
    return config
