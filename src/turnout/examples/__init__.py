"""Runnable examples over the Python SDK: the quickstart's tour of the whole lifecycle.

They talk to a server only through `turnout.Client`, like any application would; the
model and pipeline code they register lives in `turnout.examples.models`."""
