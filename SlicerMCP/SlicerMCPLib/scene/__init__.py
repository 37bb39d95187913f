"""Working on an MRML scene: nodes, volumes, measurements, pictures, sample data, Python.

Functions here take a scene application (Slicer's, or the headless one) and run on its
main thread: listing and describing nodes (`nodes`), loading and exporting data (`data_io`),
segment volumes (`measure`), off-screen slice and 3D pictures (`rendering`,
`volume_rendering`), the view layout (`app`), `execute_python` namespaces (`python_exec`),
the demo phantom (`demo`) and the sample data registry and cache (`sampledata`). It may
import `core` only; VTK and MRML are imported lazily, inside the functions that need them.
"""
