"""Transport helpers shared by hbbs and hbbr: listening sockets, console gate, proxies."""
