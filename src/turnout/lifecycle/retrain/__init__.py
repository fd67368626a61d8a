"""Retraining: policies (when), jobs (how, out of the serving processes), lineage (what)."""
