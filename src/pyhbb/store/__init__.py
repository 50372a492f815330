"""Peer storage: the interface the rendezvous server needs, and its SQLite implementation."""
