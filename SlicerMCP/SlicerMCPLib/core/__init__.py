"""The base every layer stands on: errors, result models, the config, the main-thread gateway.

Here live the coded error types (`errors`), the scene result models (`models`), the typed
config and its loader (`config`, with the DICOM/FHIR/RIS sections in `domain_config`), the
user's folders and private files and folders (`localhost`), the highest level each third-party
logger may log at (`log_levels`: no message bodies under `-v`), the gateway that runs work on the scene's
main thread (`gateway`), the interface every scene backend implements (`scene_backend`), the
lifespan context a tool receives (`services`), the circuit breaker per peer (`breaker`), the
audit log of tool calls (`audit`), the coded segment categories and types Slicer keeps on a
segment and the results report (`terminology`) and the loopback HTTP server with its token and
Origin checks (`http_server`). It imports only the standard library and third-party packages:
nothing else in SlicerMCPLib. Never Slicer, VTK or Qt.
"""
