"""execute_python on the headless scene: gated, captured, one namespace per client session."""

from __future__ import annotations

import asyncio
import time

from fixtures.scene import call_tool, call_tools, error_of
from SlicerMCPLib.core.errors import ErrorCode


def test_disabled_by_default(mcp_server) -> None:
    body = error_of(call_tool(mcp_server, "execute_python", {"code": "1 + 1"}))
    assert body["code"] == ErrorCode.OPERATION_DISABLED
    assert body["details"]["config_key"] == "allow.execute_python"


def test_output_value_and_traceback(mcp_server, scene_config, scene_thread) -> None:
    scene_config.allow.execute_python = True
    ok, err, syntax, volume = call_tools(
        mcp_server,
        [
            (
                "execute_python",
                {
                    "code": "import sys, threading\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\n"
                    "threading.get_ident()"
                },
            ),
            ("execute_python", {"code": "def f():\n    return 1 / 0\nf()"}),
            ("execute_python", {"code": "def broken(:"}),
            (
                "execute_python",
                {
                    "code": "import numpy as np\nn = slicer.util.addVolumeFromArray(np.zeros((2, 3, 4)), name='py')\n"
                    "(n.GetName(), mrmlScene is scene, np.__name__, vtk.vtkVersion.GetVTKMajorVersion() > 8)"
                },
            ),
        ],
    )
    r = ok.structured_content
    assert r["success"] and r["stdout"] == "to stdout\n" and r["stderr"] == "to stderr\n"
    assert int(r["result"]) == scene_thread.ident, "user code runs on the scene (main) thread"
    e = err.structured_content
    assert not e["success"] and e["error"].startswith("ZeroDivisionError")
    assert "line 2, in f" in e["traceback"] and "<execute_python>" in e["traceback"]
    s = syntax.structured_content
    assert not s["success"] and s["error"].startswith("SyntaxError")
    assert volume.structured_content["result"] == "('py', True, 'numpy', True)"
    listed = call_tool(mcp_server, "list_scene_nodes", {"name": "py"}).structured_content
    assert listed["total"] == 1


def test_namespace_persists_per_session_key(clean_backend) -> None:
    """The backend keeps one namespace per session key (tools/scene.py derives the key from the client)."""

    async def main():
        await clean_backend.execute_python("x = 41", "client-a", 10)
        again = await clean_backend.execute_python("x + 1", "client-a", 10)
        other = await clean_backend.execute_python("x", "client-b", 10)
        return again, other

    again, other = asyncio.run(main())
    assert again.result == "42"
    assert not other.success and other.error.startswith("NameError")


def test_a_busy_loop_is_really_stopped_at_its_deadline(clean_backend) -> None:
    """`while True: pass` is stopped (an exception raised in the main thread), and the scene answers again;
    code that catches the first stop is asked again."""

    async def main():
        loop = await clean_backend.execute_python("n = 0\nwhile True:\n    n += 1", "t", 0.5)
        stubborn = await clean_backend.execute_python(
            "try:\n    while True:\n        pass\nexcept BaseException:\n    print('caught')\nwhile True:\n    pass",
            "t",
            0.5,
        )
        after = await clean_backend.execute_python("n > 0", "t", 10)
        return loop, stubborn, after

    loop, stubborn, after = asyncio.run(main())
    assert (
        not loop.success and loop.error.startswith("ExecutionStopped") and "timeouts.python_s" in loop.error
    )
    assert "<execute_python>" in loop.traceback
    assert not stubborn.success and stubborn.stdout == "caught\n"
    assert after.success and after.result == "True", "the variables set before the stop stay"


def test_code_inside_a_long_c_call_is_reported_as_unstoppable(clean_backend, scene_config) -> None:
    """time.sleep is one C call: Python cannot interrupt it, and the error says so rather than 'it will
    finish on its own'; once the call returns, the stop takes effect and the scene answers again."""
    scene_config.limits.python_stop_grace_s = 0.3

    async def main():
        return await asyncio.gather(
            clean_backend.execute_python("import time\ntime.sleep(2)\n'done'", "t", 0.1),
            return_exceptions=True,
        )

    (outcome,) = asyncio.run(main())
    assert getattr(outcome, "code", None) == ErrorCode.SLICER_TIMEOUT
    assert outcome.details["started"] is True and outcome.details["stoppable"] is False
    assert "C call" in outcome.message and "finish on its own" not in outcome.message
    ok = asyncio.run(clean_backend.execute_python("1 + 1", "t", 10))
    assert ok.result == "2"


def test_memory_guard_stops_code_that_keeps_growing(clean_backend, scene_config) -> None:
    """The guard limits the user's code, not the process: code growing the server past the budget is
    stopped and its memory can be freed; afterwards the process allocates more than the budget freely."""
    scene_config.limits.python_memory_bytes = 128 << 20
    big = asyncio.run(
        clean_backend.execute_python("x = []\nwhile True:\n    x.append(bytearray(1 << 20))", "t", 60)
    )
    assert not big.success and big.error.startswith("MemoryError")
    assert "limits.python_memory_bytes" in big.error
    freed = asyncio.run(clean_backend.execute_python("n = len(x)\ndel x\nn", "t", 30))
    assert 128 <= int(freed.result) < 4096
    outside = bytearray(256 << 20)  # no process-wide cap (RLIMIT_AS) is left behind
    assert len(outside) == 256 << 20
    small = asyncio.run(clean_backend.execute_python("len(bytearray(16 << 20))", "t", 30))
    assert small.result == str(16 << 20), "smaller work runs after a stop"


def test_namespace_persists_over_stdio(tmp_path) -> None:
    """A real client over stdio keeps its namespace between calls (one process, one session)."""
    import os
    import sys
    from pathlib import Path

    from mcp import Client, StdioServerParameters

    command = Path(sys.executable).with_name("slicer-mcp")
    env = {**os.environ, "SLICER_MCP_HOME": str(tmp_path), "SLICER_MCP_ALLOW_EXECUTE_PYTHON": "true"}
    params = StdioServerParameters(
        command=str(command), args=["serve", "--headless", "--transport", "stdio"], env=env
    )

    async def main():
        async with Client(params) as client:
            await client.call_tool("execute_python", {"code": "x = 41"})
            return (await client.call_tool("execute_python", {"code": "x + 1"})).structured_content

    assert asyncio.run(main())["result"] == "42"


def test_a_value_whose_repr_raises_is_reported_not_a_crash(mcp_server, scene_config) -> None:
    """The console shows the traceback when repr() of the last value fails; so does execute_python."""
    scene_config.allow.execute_python = True
    code = "class Odd:\n    def __repr__(self):\n        raise ValueError('no repr')\nprint('ran')\nOdd()"
    result = call_tool(mcp_server, "execute_python", {"code": code})
    assert not result.is_error, result.content[0].text
    r = result.structured_content
    assert not r["success"] and r["error"] == "ValueError: no repr"
    assert r["stdout"] == "ran\n" and "__repr__" in r["traceback"]


def test_memory_guard_does_not_cap_the_rest_of_the_process(clean_backend, scene_config) -> None:
    """While user code runs, Slicer's other threads may reserve memory freely (RLIMIT_AS made this fail)."""
    import mmap
    import threading

    scene_config.limits.python_memory_bytes = 64 << 20
    reserved: list[object] = []

    def reserve() -> None:
        time.sleep(0.3)
        try:
            reserved.append(mmap.mmap(-1, 1 << 30))  # address space, not resident memory
        except (OSError, MemoryError) as exc:
            reserved.append(exc)

    other = threading.Thread(target=reserve)
    other.start()
    ran = asyncio.run(
        clean_backend.execute_python(
            "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.5:\n    pass\n'ok'", "t", 30
        )
    )
    other.join()
    assert ran.result == "'ok'"
    assert isinstance(reserved[0], mmap.mmap), f"another thread could not reserve memory: {reserved[0]!r}"
    reserved[0].close()


def test_a_removed_node_is_not_kept_alive_by_the_namespace(clean_backend) -> None:
    """Names still bound to a node the code removed (the node, a list of its parts) are dropped after
    the call, so the node and its voxels are freed; other names stay. The soak's load + RemoveNode
    pinned one volume per kept namespace (64 of them) before."""
    load_and_remove = (
        "import numpy as np\n"
        "n = slicer.util.addVolumeFromArray(np.zeros((20, 30, 40), np.int16), name='pinned')\n"
        "n.CreateDefaultDisplayNodes()\n"
        "voxels = vtk.vtkWeakReference()\n"
        "voxels.Set(n.GetImageData())\n"
        "parts = [n.GetDisplayNode(), n]\n"
        "by_id = {n.GetID(): n}\n"
        "kept = mrmlScene.GetFirstNodeByClass('vtkMRMLSliceNode')\n"
        "number = 7\n"
        "for p in parts:\n    mrmlScene.RemoveNode(p)\n"
        "n.GetScene() is None"
    )

    async def main():
        first = await clean_backend.execute_python(load_and_remove, "k", 10)
        after = await clean_backend.execute_python(
            "(sorted(k for k in ('n', 'parts', 'by_id', 'p') if k in globals()), voxels.Get() is None, "
            "kept.GetScene() is mrmlScene, number)",
            "k",
            10,
        )
        return first, after

    first, after = asyncio.run(main())
    assert first.success and first.result == "True", first
    assert after.result == "([], True, True, 7)", after
