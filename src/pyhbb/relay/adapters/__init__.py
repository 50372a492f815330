"""hbbr's asyncio adapters: listeners, client protocols, the action executor."""
