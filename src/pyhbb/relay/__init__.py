"""hbbr, the relay server: pairing, splice pass-through, WebSocket bridging, limits."""
