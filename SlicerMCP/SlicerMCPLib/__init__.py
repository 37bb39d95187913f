"""SlicerMCP's package: an MCP server on a 3D Slicer scene, with DICOM, FHIR and mini-RIS tools.

Folders are layers, lowest first; a layer imports only the ones below it, and no two
modules import each other:

    core/                 errors, models, config, gateway, services, loopback HTTP server
    scene/                working on an MRML scene (nodes, data, measure, rendering, samples)
    dicom/ fhir/ ris/     the domain services (fhir and ris may use dicom)
    backends/             how a tool reaches a scene: in-process MRML or Slicer's WebServer
    tools/                the MCP tool catalog and resources
    serving/              the MCP server, its HTTP endpoint, token and endpoint file
    hosts/                in Slicer (controller, panel, Qt driver) or headless

Importing this package never imports Slicer, VTK or Qt; the MRML backend and the module
load those lazily, so the catalog and services run under plain pytest.
"""

__version__ = "0.1.0"
