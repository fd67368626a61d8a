"""Model and pipeline code the tour registers: each module is uploaded as a file, never
imported by the server, and runs only in runner or job processes.

A model folder carries its settings in `settings.json` beside `model.py`, read when the
runner loads it (`Model.load`)."""
