"""Hosting a scene and its server: inside Slicer (`inslicer`, `panel`, `qt_driver`) or headless.

`inslicer` is the controller the module and the Python console use (start, stop, status,
call_tool); `panel` is what the module panel does, in plain classes; `qt_driver` drains the
gateway from Qt's main thread; `dependencies` checks Slicer's version and pip packages;
`headless` bootstraps the slicer-core scene and runs `slicer-mcp serve --headless`. The top
layer: it may import every other package; nothing in SlicerMCPLib imports it.
"""
