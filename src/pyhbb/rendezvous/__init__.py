"""The rendezvous/ID server (hbbs): protocol core, tables and asyncio adapters."""
