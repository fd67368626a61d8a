"""The data plane: a lean ASGI app that routes prediction requests to loaded versions."""
