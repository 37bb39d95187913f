"""A stand-in for 3D Slicer's WebServer module, for tests: same paths, parameters and answers.

Slicer can't be installed here, so `server.py` serves the WebServer's `/slicer/...` API
over a headless slicer-core scene. Run it as `python -m webserver_peer --port P [--exec]`
(with Testing/ on sys.path).
"""
