"""Scene backends: the ways a tool reaches a scene, each implementing `core.scene_backend.SceneBackend`.

`mrml` drives a scene in this process (Slicer's or the headless one) through the
main-thread gateway and the `scene` functions; `webserver` drives a running Slicer over its
WebServer module's HTTP endpoints (`webserver_http` knows the URLs, `webserver_exec` the
code it sends, `webserver_nrrd` the volume format). It may import `core` and `scene`.
"""
