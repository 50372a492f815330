"""asyncio adapters of hbbs: they move bytes between sockets and the protocol core."""
