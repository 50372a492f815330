"""The NATS side of cluster mode (docs/cluster.md §1): the only place that imports nats.

:mod:`.connection` opens the connection and the KV buckets, :mod:`.directory` is the
peer directory on JetStream KV, :mod:`.bus` routes requests and answers over core NATS
subjects, :mod:`.node` runs a node's presence and relay loads and ties it to hbbs.
"""
