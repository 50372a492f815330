"""The C upper-bound baseline of the hbbs benchmark, kept as source text and built by gcc.

A single-threaded UDP server that answers RegisterPeer (first byte 0x32) with a constant
RegisterPeerResponse{request_pk=false} and RegisterPk (0x7a) with a constant
RegisterPkResponse{OK}: no parsing beyond the first byte, nothing stored. Plain
recvfrom/sendto (no recvmmsg) on a dual-stack socket, like hbbs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

C_SOURCE = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [RCVBUF]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    int rcvbuf = argc > 2 ? atoi(argv[2]) : 0;
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    int off = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in6 addr;
    memset(&addr, 0, sizeof addr);
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_any;
    addr.sin6_port = htons((unsigned short)port);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("bind");
        return 1;
    }
    static const unsigned char peer_ok[] = {0x3a, 0x00};
    static const unsigned char pk_ok[] = {0x82, 0x01, 0x00};
    unsigned char buf[4096];
    for (;;) {
        struct sockaddr_storage src;
        socklen_t srclen = sizeof src;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&src, &srclen);
        if (n <= 0)
            continue;
        if (buf[0] == 0x32)
            sendto(fd, peer_ok, sizeof peer_ok, 0, (struct sockaddr *)&src, srclen);
        else if (buf[0] == 0x7a)
            sendto(fd, pk_ok, sizeof pk_ok, 0, (struct sockaddr *)&src, srclen);
    }
}
"""


def build(workdir: Path) -> Path:
    """Compile the baseline into ``workdir``; returns the executable's path.

    Usage of the binary: ``hbbs_udp_baseline PORT [RCVBUF_BYTES]``; stops on SIGTERM.
    """
    source = workdir / "hbbs_udp_baseline.c"
    binary = workdir / "hbbs_udp_baseline"
    source.write_text(C_SOURCE)
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(source)], check=True)
    return binary
