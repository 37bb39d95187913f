"""`slicer-mcp`: the command-line entry point (stdio bridge, headless server, service commands)."""
