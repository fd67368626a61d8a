"""The `turnout` command line: a thin face over the Python SDK (and `serve`)."""
