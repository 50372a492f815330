"""Big tables kept as many small dicts, chosen by the key's hash, so that growing one never
stalls the event loop.

A dict grows by copying every entry into a table twice the size, in one C call: the peer
table did so at 349,525 and 699,050 entries, holding the loop for 31 and 80 ms in a 1M
warm start (bench/hbbs_probe.py's stall stacks), and would again at 1,398,101. Split
:data:`SHARDS` ways, each growth copies a 256th of the table (~0.3 ms at two million
peers), and the shards grow one at a time as their own counts cross the thresholds. The
cost is one ``hash()`` of the key per access: a ``str`` caches its hash, so ~30 ns.
"""

from __future__ import annotations

SHARD_BITS = 8
SHARDS = 1 << SHARD_BITS
SHARD_MASK = SHARDS - 1
"""``hash(key) & SHARD_MASK``: the shard of ``key``."""
