"""The model host: one per node, shared by every gateway worker.

A supervisor owns a pool of runner processes forked from a warm template; each runner holds
many models, loaded on demand within a memory budget and evicted least recently used first.
Gateway workers ask the supervisor where a model is, then call its runner directly.
"""
