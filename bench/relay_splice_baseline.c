/*
 * Baseline for bench/relay_bench.py: a minimal single-threaded C relay that moves bytes
 * with splice(2) through one pipe per direction, driven by level-triggered epoll. It is
 * what pyhbb's raw mode does, minus Python, limits and bookkeeping.
 *
 * Protocol, just enough for the benchmark: every connection first sends one RustDesk
 * frame (read exactly and discarded); connections are paired in arrival order.
 *
 * Usage: relay_splice_baseline PORT        (listens on 127.0.0.1:PORT, runs until killed)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define PIPE_SIZE (1024 * 1024)
#define MAX_EVENTS 256

struct pair;
struct conn {
    int fd;
    int idx; /* 0 or 1 within the pair */
    uint32_t mask; /* events currently registered, to skip needless epoll_ctl calls */
    struct pair *pair;
};
struct half { /* conn[i] -> conn[1-i] */
    int pr, pw;
    size_t in_pipe;
    int eof;
};
struct pair {
    struct conn c[2];
    struct half h[2];
    int closed;
    struct pair *next_dead;
};

static int ep;
static struct pair *dead;

static void close_pair(struct pair *p) {
    if (p->closed) return;
    p->closed = 1;
    for (int i = 0; i < 2; i++) {
        epoll_ctl(ep, EPOLL_CTL_DEL, p->c[i].fd, NULL);
        close(p->c[i].fd);
        close(p->h[i].pr);
        close(p->h[i].pw);
    }
    p->next_dead = dead; /* freed after the current batch of events */
    dead = p;
}

static void update(struct pair *p) {
    for (int i = 0; i < 2; i++) {
        struct half *mine = &p->h[i], *theirs = &p->h[1 - i];
        uint32_t ev = 0;
        if (mine->in_pipe == 0 && !mine->eof) ev |= EPOLLIN;
        if (theirs->in_pipe > 0) ev |= EPOLLOUT;
        if (ev == p->c[i].mask) continue;
        p->c[i].mask = ev;
        struct epoll_event e = {.events = ev, .data.ptr = &p->c[i]};
        epoll_ctl(ep, EPOLL_CTL_MOD, p->c[i].fd, &e);
    }
    for (int i = 0; i < 2; i++)
        if (p->h[i].eof && p->h[i].in_pipe == 0) close_pair(p);
}

static int flush(struct pair *p, int i) {
    struct half *h = &p->h[i];
    while (h->in_pipe) {
        ssize_t n = splice(h->pr, NULL, p->c[1 - i].fd, NULL, h->in_pipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0) {
            if (errno == EAGAIN) return 0;
            close_pair(p);
            return -1;
        }
        h->in_pipe -= (size_t)n;
    }
    return 0;
}

static void on_read(struct pair *p, int i) {
    struct half *h = &p->h[i];
    ssize_t n = splice(p->c[i].fd, NULL, h->pw, NULL, PIPE_SIZE,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0) {
        if (errno == EAGAIN) return;
        close_pair(p);
        return;
    }
    if (n == 0) h->eof = 1;
    h->in_pipe += (size_t)n;
    flush(p, i);
}

static int read_exact(int fd, unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, buf + got, n - got, 0);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

/* Blocking read of one frame; the benchmark's clients send it at once. */
static int skip_first_frame(int fd) {
    unsigned char head[4] = {0}, *payload;
    if (read_exact(fd, head, 1) < 0) return -1;
    size_t k = (head[0] & 3) + 1;
    if (k > 1 && read_exact(fd, head + 1, k - 1) < 0) return -1;
    size_t len = ((size_t)head[0] | (size_t)head[1] << 8 | (size_t)head[2] << 16 |
                  (size_t)head[3] << 24) >> 2;
    if (len > 65536) return -1;
    payload = malloc(len + 1);
    int rc = read_exact(fd, payload, len);
    free(payload);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1024) < 0) {
        perror("listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &le);
    int waiting = -1;
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            if (c == NULL) { /* listener */
                int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) continue;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                if (skip_first_frame(fd) < 0) {
                    close(fd);
                    continue;
                }
                fcntl(fd, F_SETFL, O_NONBLOCK);
                if (waiting < 0) {
                    waiting = fd;
                    continue;
                }
                struct pair *p = calloc(1, sizeof *p);
                int fds[2] = {waiting, fd};
                waiting = -1;
                for (int i = 0; i < 2; i++) {
                    int pp[2];
                    if (pipe2(pp, O_NONBLOCK | O_CLOEXEC) < 0) {
                        perror("pipe2");
                        return 1;
                    }
                    fcntl(pp[1], F_SETPIPE_SZ, PIPE_SIZE);
                    p->h[i].pr = pp[0];
                    p->h[i].pw = pp[1];
                    p->c[i] = (struct conn){.fd = fds[i], .idx = i, .mask = EPOLLIN, .pair = p};
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &p->c[i]};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e);
                }
                continue;
            }
            struct pair *p = c->pair;
            if (p->closed) continue;
            int i = c->idx;
            if ((evs[k].events & EPOLLOUT) && p->h[1 - i].in_pipe) {
                if (flush(p, 1 - i) < 0) continue;
            }
            if ((evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && p->h[i].in_pipe == 0 &&
                !p->h[i].eof) {
                on_read(p, i);
                if (p->closed) continue;
            }
            update(p);
        }
        while (dead) {
            struct pair *next = dead->next_dead;
            free(dead);
            dead = next;
        }
    }
}
