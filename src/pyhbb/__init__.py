"""pyhbb: a drop-in RustDesk rendezvous (hbbs) and relay (hbbr) server."""

__version__ = "0.1.0"
