"""Storage: the process's one SQLite database, its repositories, and hbbs's PeerStore.

:mod:`.database` owns the file (threads, group commit, migrations); :mod:`.peers` is the
official ``peer`` table as a repository on it; :mod:`.base` is the interface and errors.
"""
