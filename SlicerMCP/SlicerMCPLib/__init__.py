"""SlicerMCP core: the MCP tool catalog, scene backends and DICOM/FHIR/RIS services.

Importing this package never imports Slicer, VTK or Qt; the MRML backend and the
module load those lazily, so the catalog and services run under plain pytest.
"""

__version__ = "0.1.0"
