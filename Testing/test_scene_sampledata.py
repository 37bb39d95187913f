"""load_sample_data against a local content-addressed mirror (python http.server), checksums, offline."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.core import free_port, loose_modes
from fixtures.scene import call_tool, error_of, make_phantom_volume
from SlicerMCPLib.core.errors import ErrorCode
from SlicerMCPLib.scene.sampledata import SampleDataCache, SampleSpec


@pytest.fixture
def mirror(tmp_path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server serving <root>/SHA256/<sha256> like Slicer's testing-data store."""
    root = tmp_path / "mirror"
    (root / "SHA256").mkdir(parents=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def publish(root: Path, data: bytes, as_sha: str | None = None) -> str:
    sha = hashlib.sha256(data).hexdigest()
    (root / "SHA256" / (as_sha or sha)).write_bytes(data)
    return sha


def use_registry(services, base_url: str, specs: list[SampleSpec], tmp_path: Path) -> SampleDataCache:
    services.config.sample_data.base_url = base_url
    services.config.sample_data.cache_dir = str(tmp_path / "cache")
    return services.domain(
        SampleDataCache,
        lambda config: SampleDataCache(config.sample_data, registry={x.name: x for x in specs}),
    )


def test_download_verify_cache_and_load(mcp_server, headless_services, mirror, tmp_path, usual_umask) -> None:
    base_url, root = mirror
    data = make_phantom_volume(tmp_path).read_bytes()
    sha = publish(root, data)
    cache = use_registry(
        headless_services, base_url, [SampleSpec("Phantom", "test phantom", "phantom.nrrd", sha)], tmp_path
    )
    listed = call_tool(mcp_server, "list_sample_data").structured_content
    assert listed["samples"][0]["cached"] is False and listed["source"] == base_url
    result = call_tool(mcp_server, "load_sample_data", {"name": "Phantom"})
    assert not result.is_error, result.content[0].text
    loaded = result.structured_content
    assert loaded["source"] == "Phantom"
    assert loaded["nodes"][0]["name"] == "Phantom" and loaded["nodes"][0]["volume"]["dimensions"] == [
        96,
        96,
        64,
    ]
    assert call_tool(mcp_server, "list_sample_data").structured_content["samples"][0]["cached"] is True
    assert loose_modes(Path(cache.cache_dir)) == {}  # a cache is private like every file we keep
    # served from the cache from now on: the mirror may go away
    (root / "SHA256" / sha).unlink()
    again = call_tool(mcp_server, "load_sample_data", {"name": "Phantom"})
    assert not again.is_error
    assert call_tool(mcp_server, "list_scene_nodes", {"name": "Phantom"}).structured_content["total"] == 2
    # the MCP Slicer Bridge spec calls the parameter dataset_name
    spec = call_tool(mcp_server, "load_sample_data", {"dataset_name": "Phantom"})
    assert not spec.is_error and spec.structured_content["source"] == "Phantom"
    both = error_of(call_tool(mcp_server, "load_sample_data", {"name": "Phantom", "dataset_name": "MRHead"}))
    assert both["code"] == "INVALID_PARAMETER" and "dataset_name" in both["message"]
    assert error_of(call_tool(mcp_server, "load_sample_data", {}))["code"] == "INVALID_PARAMETER"


def test_checksum_mismatch_caches_nothing(mcp_server, headless_services, mirror, tmp_path) -> None:
    base_url, root = mirror
    expected = hashlib.sha256(b"the real file").hexdigest()
    publish(root, b"something else entirely", as_sha=expected)
    cache = use_registry(
        headless_services, base_url, [SampleSpec("Tampered", "bad mirror", "t.nrrd", expected)], tmp_path
    )
    body = error_of(call_tool(mcp_server, "load_sample_data", {"name": "Tampered"}))
    assert body["code"] == ErrorCode.DOWNLOAD_FAILED and "corrupt" in body["message"]
    assert not cache.cached_path(cache.spec("Tampered")).exists()
    assert not any(p.is_file() for p in Path(cache.cache_dir).rglob("*"))
    assert call_tool(mcp_server, "list_scene_nodes").structured_content["total"] == 0


def test_offline_gives_download_failed(mcp_server, headless_services, tmp_path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    use_registry(headless_services, dead, [SampleSpec("Far", "unreachable", "far.nrrd", "0" * 64)], tmp_path)
    body = error_of(call_tool(mcp_server, "load_sample_data", {"name": "Far"}))
    assert body["code"] == ErrorCode.DOWNLOAD_FAILED
    assert "mirror_dir" in body["message"]


def test_unknown_sample_is_invalid_parameter(mcp_server) -> None:
    body = error_of(call_tool(mcp_server, "load_sample_data", {"name": "NoSuchSample"}))
    assert body["code"] == ErrorCode.INVALID_PARAMETER
    assert "MRHead" in body["message"] and "list_sample_data" in body["message"]


def test_downloaded_file_that_is_not_a_volume_fails_to_load(
    mcp_server, headless_services, mirror, tmp_path
) -> None:
    base_url, root = mirror
    sha = publish(root, b"NRRD0004\nthis is not a volume\n")
    use_registry(headless_services, base_url, [SampleSpec("Junk", "junk", "junk.nrrd", sha)], tmp_path)
    body = error_of(call_tool(mcp_server, "load_sample_data", {"name": "Junk"}))
    assert body["code"] == ErrorCode.LOAD_FAILED
    assert call_tool(mcp_server, "list_scene_nodes").structured_content["total"] == 0


def test_file_url_without_the_file_gives_download_failed(mcp_server, headless_services, tmp_path) -> None:
    """A file:// base_url (an offline copy of the store) that lacks the file is a download failure."""
    store = tmp_path / "store"
    (store / "SHA256").mkdir(parents=True)
    use_registry(
        headless_services, store.as_uri(), [SampleSpec("Gone", "missing", "gone.nrrd", "1" * 64)], tmp_path
    )
    body = error_of(call_tool(mcp_server, "load_sample_data", {"name": "Gone"}))
    assert body["code"] == ErrorCode.DOWNLOAD_FAILED
    assert "Gone" in body["message"]


def test_unwritable_cache_dir_says_which_setting(mcp_server, headless_services, mirror, tmp_path) -> None:
    base_url, root = mirror
    sha = publish(root, b"some bytes")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = use_registry(headless_services, base_url, [SampleSpec("Blocked", "x", "b.nrrd", sha)], tmp_path)
    cache.cache_dir = blocker / "cache"  # a folder inside a file: cannot be made
    body = error_of(call_tool(mcp_server, "load_sample_data", {"name": "Blocked"}))
    assert body["code"] == ErrorCode.DOWNLOAD_FAILED
    assert "sample_data.cache_dir" in body["message"]
