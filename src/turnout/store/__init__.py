"""Persistent state: the metadata DB and the artifact store. No web framework here."""
