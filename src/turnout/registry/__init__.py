"""The model registry: versions, their flavors, signatures and baseline statistics."""
