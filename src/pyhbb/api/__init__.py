"""The RustDesk API server (``pyhbb api``, port 21114): accounts, address books, the
device list, device heartbeats and sysinfo, audit (docs/api.md)."""
