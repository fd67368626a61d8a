"""The web console: a face over the management API, served by `turnout serve` at `/ui`."""
