"""qplay's plug-ins for Jupyter tools (papermill)."""
