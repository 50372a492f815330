"""Several pyhbb nodes, one ID space (docs/cluster.md).

The rendezvous core names what must happen ("read the directory entry of B", "claim B
for this node", "ask B's holder to send the punch", "deliver this answer to A's node");
two small interfaces say how:

* :class:`~pyhbb.cluster.directory.Directory`: the peer directory (get, create,
  compare-and-set, claim, rename);
* :class:`~pyhbb.cluster.bus.Bus`: requests to the node holding a peer, answers to the
  node where a requester waits, and the online scatter-gather.

Each has an in-process implementation (:mod:`pyhbb.cluster.local`: the single server,
on its SQLite database) and a NATS one (:mod:`pyhbb.rendezvous.adapters.cluster`,
imported only when ``--cluster`` is given). This package never imports nats.
"""
