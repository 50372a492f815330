/* Load generator for hbbs at real address spread, in C: the client model of
 * bench/hbbs_spread.py (its module docstring has the rules) for N peers in one process,
 * so that a million simulated clients do not need more CPU than the server they test.
 *
 * Peer k sends from IP number k / per_addr (127.16.0.1 ... as SpreadLayout.addr_ip) and
 * socket slot k % per_addr, through IP_PKTINFO on wildcard-bound sockets; the answer's
 * IP_PKTINFO (the address it was sent to) and the socket it came to name the peer.
 * Datagrams go out with sendmmsg and come in with recvmmsg, in batches.
 *
 * The messages come from Python as templates (hbbs_spread.py: gen_templates): the
 * RegisterPeer and RegisterPk of peer 0 and where its id digits, uuid digits and key sit;
 * peer k's are spliced in here (the key is read from a file of 32 bytes per peer).
 *
 * Commands on stdin, one per line; each answered by one line on stdout:
 *   run T            start the client model at monotonic time T     -> "running"
 *   reset            forget who is online, zero the counters        -> "reset T"
 *   stats            online count and counters, as JSON             -> {...}
 *   times PATH       write online_at (float64 per peer) to PATH     -> "times"
 *   silence M R      peers with k % M == R stop sending             -> "silenced N"
 *   stop             leave (after the stats line)                   -> {...}
 * Every table is sized once from N; nothing grows while running.
 *
 * Build: gcc -O2 -Wall -o hbbs_spread_gen hbbs_spread_gen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 256
#define MAX_MSG 512
#define RCVBUF (16 << 20)

static double PERIOD = 15.0, RETRY = 3.0;

/* answers, byte for byte (hbbs_spread.py HB_OK, HB_REQUEST_PK, PK_OK) */
static const uint8_t HB_OK[] = {0x3a, 0x00};
static const uint8_t HB_REQUEST_PK[] = {0x3a, 0x02, 0x10, 0x01};
static const uint8_t PK_OK[] = {0x82, 0x01, 0x00};

struct tmpl {
    uint8_t bytes[MAX_MSG];
    int len, id_off, k_off, pk_off; /* -1: not in this message */
};

static long n_peers, per_addr, first_id;
static int id_digits, k_digits;
static struct tmpl hb_t, pk_t;
static uint8_t *pks; /* 32 bytes per peer */
static uint8_t *confirmed, *waiting, *silenced;
static uint32_t *seqs;
static double *online_at;
static long n_online, n_silenced;
static uint32_t seq_counter;

/* retry queue: a ring of (deadline, peer, seq), in deadline order since RETRY is fixed */
struct due { double at; uint32_t peer, seq; };
static struct due *ring;
static long ring_cap, ring_head, ring_len;

static long c_hb, c_pk, c_retries, c_hb_ok, c_hb_rpk, c_pk_ok, c_other, c_late, c_send_err,
    c_ring_full, c_foreign;

static int *socks, epfd;
static struct sockaddr_in server;

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static uint32_t addr_ip(long a) { /* host order; SpreadLayout.addr_ip */
    long hi = a / 254, lo = a % 254;
    return (127u << 24) | ((uint32_t)(16 + hi / 256) << 16) | ((uint32_t)(hi % 256) << 8) |
           (uint32_t)(lo + 1);
}

static long addr_number(uint32_t ip) { /* inverse of addr_ip, -1 when not ours */
    uint32_t b1 = (ip >> 16) & 255, b2 = (ip >> 8) & 255, b3 = ip & 255;
    if ((ip >> 24) != 127 || b1 < 16 || b3 < 1 || b3 > 254) return -1;
    return ((long)(b1 - 16) * 256 + b2) * 254 + b3 - 1;
}

static void put_digits(uint8_t *at, unsigned long long v, int width) {
    for (int i = width - 1; i >= 0; i--) {
        at[i] = (uint8_t)('0' + v % 10);
        v /= 10;
    }
}

/* peer k's message from a template, into out; returns its length */
static int build(const struct tmpl *t, long k, uint8_t *out) {
    memcpy(out, t->bytes, (size_t)t->len);
    if (t->id_off >= 0) put_digits(out + t->id_off, (unsigned long long)(first_id + k), id_digits);
    if (t->k_off >= 0) put_digits(out + t->k_off, (unsigned long long)k, k_digits);
    if (t->pk_off >= 0) memcpy(out + t->pk_off, pks + 32 * k, 32);
    return t->len;
}

/* -- sending: one batch per socket slot, flushed when full or when the slot changes -- */

static struct mmsghdr out_msgs[BATCH];
static struct iovec out_iov[BATCH];
static uint8_t out_buf[BATCH][MAX_MSG];
static uint8_t out_ctl[BATCH][CMSG_SPACE(sizeof(struct in_pktinfo))];
static int out_n, out_slot = -1;

static void flush(void) {
    int done = 0;
    while (done < out_n) {
        int r = sendmmsg(socks[out_slot], out_msgs + done, (unsigned)(out_n - done), 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            c_send_err += out_n - done; /* EAGAIN included: a client's datagram is lost */
            break;
        }
        done += r;
    }
    out_n = 0;
}

static void queue_send(long k, const struct tmpl *t) {
    int slot = (int)(k % per_addr);
    if (out_n == BATCH || (out_n && slot != out_slot)) flush();
    out_slot = slot;
    int i = out_n++;
    out_iov[i].iov_base = out_buf[i];
    out_iov[i].iov_len = (size_t)build(t, k, out_buf[i]);
    struct msghdr *h = &out_msgs[i].msg_hdr;
    memset(h, 0, sizeof *h);
    h->msg_name = &server;
    h->msg_namelen = sizeof server;
    h->msg_iov = &out_iov[i];
    h->msg_iovlen = 1;
    h->msg_control = out_ctl[i];
    h->msg_controllen = sizeof out_ctl[i];
    struct cmsghdr *c = CMSG_FIRSTHDR(h);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    struct in_pktinfo pi;
    memset(&pi, 0, sizeof pi);
    pi.ipi_spec_dst.s_addr = htonl(addr_ip(k / per_addr));
    memcpy(CMSG_DATA(c), &pi, sizeof pi);
}

/* send peer k's current request and expect an answer within RETRY */
static void request(long k, double now) {
    if (confirmed[k]) {
        queue_send(k, &hb_t);
        c_hb++;
    } else {
        queue_send(k, &pk_t);
        c_pk++;
    }
    seqs[k] = ++seq_counter;
    waiting[k] = 1;
    if (ring_len == ring_cap) {
        c_ring_full++; /* cannot happen with the sizing below; never overwrite */
        return;
    }
    struct due *d = &ring[(ring_head + ring_len++) % ring_cap];
    d->at = now + RETRY;
    d->peer = (uint32_t)k;
    d->seq = seqs[k];
}

/* -- receiving -- */

static struct mmsghdr in_msgs[BATCH];
static struct iovec in_iov[BATCH];
static uint8_t in_buf[BATCH][64];
static uint8_t in_ctl[BATCH][CMSG_SPACE(sizeof(struct in_pktinfo)) + 64];

static void answer(long k, const uint8_t *data, size_t len, double now) {
    if (!waiting[k]) {
        c_late++;
        return;
    }
    waiting[k] = 0;
    if (len == sizeof HB_OK && !memcmp(data, HB_OK, len)) {
        c_hb_ok++;
        if (online_at[k] == 0) {
            online_at[k] = now;
            n_online++;
        }
    } else if (len == sizeof HB_REQUEST_PK && !memcmp(data, HB_REQUEST_PK, len)) {
        c_hb_rpk++;
        confirmed[k] = 0;
        request(k, now); /* RegisterPk at once */
    } else if (len == sizeof PK_OK && !memcmp(data, PK_OK, len)) {
        c_pk_ok++;
        confirmed[k] = 1;
    } else {
        c_other++;
    }
}

static void receive(int slot, double now) {
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            in_iov[i].iov_base = in_buf[i];
            in_iov[i].iov_len = sizeof in_buf[i];
            struct msghdr *h = &in_msgs[i].msg_hdr;
            memset(h, 0, sizeof *h);
            h->msg_iov = &in_iov[i];
            h->msg_iovlen = 1;
            h->msg_control = in_ctl[i];
            h->msg_controllen = sizeof in_ctl[i];
        }
        int r = recvmmsg(socks[slot], in_msgs, BATCH, MSG_DONTWAIT, NULL);
        if (r <= 0) return;
        for (int i = 0; i < r; i++) {
            struct msghdr *h = &in_msgs[i].msg_hdr;
            long a = -1;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
                if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                    struct in_pktinfo pi;
                    memcpy(&pi, CMSG_DATA(c), sizeof pi);
                    a = addr_number(ntohl(pi.ipi_addr.s_addr));
                }
            }
            long k = a < 0 ? -1 : a * per_addr + slot;
            if (k < 0 || k >= n_peers) {
                c_foreign++;
                continue;
            }
            answer(k, in_buf[i], in_msgs[i].msg_len, now);
        }
        if (r < BATCH) return;
    }
}

/* -- commands -- */

static void print_stats(void) {
    printf("{\"online\": %ld, \"peers\": %ld, \"counts\": {\"sent_heartbeats\": %ld, "
           "\"sent_register_pk\": %ld, \"retries\": %ld, \"hb_ok\": %ld, \"hb_request_pk\": %ld, "
           "\"pk_ok\": %ld, \"other_answers\": %ld, \"late_answers\": %ld, \"send_errors\": %ld, "
           "\"retry_queue_full\": %ld, \"foreign\": %ld}}\n",
           n_online, n_peers - n_silenced, c_hb, c_pk, c_retries, c_hb_ok, c_hb_rpk, c_pk_ok,
           c_other, c_late, c_send_err, c_ring_full, c_foreign);
    fflush(stdout);
}

static char cmd_buf[4096];
static size_t cmd_len;
static int running, quit;
static double start_at;

static void command(char *line) {
    char path[3000];
    double t;
    long m, r;
    if (sscanf(line, "run %lf", &t) == 1) {
        start_at = t;
        running = 1;
        printf("running\n");
    } else if (!strcmp(line, "reset")) {
        memset(online_at, 0, sizeof(double) * (size_t)n_peers);
        n_online = 0;
        c_hb = c_pk = c_retries = c_hb_ok = c_hb_rpk = c_pk_ok = c_other = c_late = 0;
        c_send_err = c_ring_full = c_foreign = 0;
        printf("reset %.6f\n", now_mono());
    } else if (!strcmp(line, "stats")) {
        print_stats();
        return;
    } else if (sscanf(line, "times %2999s", path) == 1) {
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(online_at, sizeof(double), (size_t)n_peers, f) != (size_t)n_peers)
            die("times");
        fclose(f);
        printf("times\n");
    } else if (sscanf(line, "silence %ld %ld", &m, &r) == 2 && m > 0) {
        for (long k = 0; k < n_peers; k++)
            if (k % m == r && !silenced[k]) {
                silenced[k] = 1;
                n_silenced++;
            }
        printf("silenced %ld\n", n_silenced);
    } else if (!strcmp(line, "stop")) {
        print_stats();
        quit = 1;
        return;
    } else {
        printf("error unknown command\n");
    }
    fflush(stdout);
}

static void read_commands(void) {
    for (;;) {
        ssize_t r = read(0, cmd_buf + cmd_len, sizeof cmd_buf - 1 - cmd_len);
        if (r == 0) {
            quit = 1; /* the parent went away */
            return;
        }
        if (r < 0) return;
        cmd_len += (size_t)r;
        char *nl;
        while ((nl = memchr(cmd_buf, '\n', cmd_len))) {
            *nl = 0;
            command(cmd_buf);
            size_t used = (size_t)(nl - cmd_buf) + 1;
            memmove(cmd_buf, nl + 1, cmd_len - used);
            cmd_len -= used;
        }
        if (cmd_len == sizeof cmd_buf - 1) cmd_len = 0; /* a line too long: dropped */
    }
}

static void read_tmpl(const char *hex, const char *offs, struct tmpl *t) {
    size_t n = strlen(hex) / 2;
    if (n > MAX_MSG) { fprintf(stderr, "template too long\n"); exit(2); }
    for (size_t i = 0; i < n; i++) sscanf(hex + 2 * i, "%2hhx", &t->bytes[i]);
    t->len = (int)n;
    if (sscanf(offs, "%d,%d,%d", &t->id_off, &t->k_off, &t->pk_off) != 3) {
        fprintf(stderr, "bad offsets %s\n", offs);
        exit(2);
    }
}

int main(int argc, char **argv) {
    if (argc != 15) {
        fprintf(stderr,
                "usage: %s SERVER_IP PORT PEERS PER_ADDR FIRST_ID ID_DIGITS K_DIGITS "
                "HB_HEX HB_OFFS PK_HEX PK_OFFS PKS_FILE CONFIRMED PERIOD\n",
                argv[0]);
        return 2;
    }
    memset(&server, 0, sizeof server);
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) die("server address");
    n_peers = atol(argv[3]);
    per_addr = atol(argv[4]);
    first_id = atol(argv[5]);
    id_digits = atoi(argv[6]);
    k_digits = atoi(argv[7]);
    read_tmpl(argv[8], argv[9], &hb_t);
    read_tmpl(argv[10], argv[11], &pk_t);
    PERIOD = atof(argv[14]);
    if (n_peers <= 0 || per_addr <= 0 || per_addr > 1000 || PERIOD <= 0) {
        fprintf(stderr, "bad sizes\n");
        return 2;
    }
    size_t n = (size_t)n_peers;
    pks = malloc(32 * n);
    FILE *f = fopen(argv[12], "rb");
    if (!f || !pks || fread(pks, 32, n, f) != n) die("keys file");
    fclose(f);
    confirmed = calloc(n, 1);
    waiting = calloc(n, 1);
    silenced = calloc(n, 1);
    seqs = calloc(n, sizeof *seqs);
    online_at = calloc(n, sizeof *online_at);
    /* live entries: at most one periodic or retried request per peer per RETRY, plus the
       RegisterPk sent at once on request_pk: 2N bounds it, 4N leaves room */
    ring_cap = 4 * n_peers + 1024;
    ring = malloc(sizeof *ring * (size_t)ring_cap);
    if (!confirmed || !waiting || !silenced || !seqs || !online_at || !ring) die("malloc");
    if (atoi(argv[13])) memset(confirmed, 1, n);

    epfd = epoll_create1(0);
    socks = calloc((size_t)per_addr, sizeof *socks);
    for (long j = 0; j < per_addr; j++) {
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        int one = 1, size = RCVBUF;
        if (s < 0) die("socket");
        if (setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
            setsockopt(s, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        if (setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
            setsockopt(s, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        if (setsockopt(s, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0) die("IP_PKTINFO");
        struct sockaddr_in any = {.sin_family = AF_INET};
        if (bind(s, (struct sockaddr *)&any, sizeof any) < 0) die("bind");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)j};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev) < 0) die("epoll_ctl");
        socks[j] = s;
    }
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) < 0) die("epoll_ctl stdin");
    printf("ready %ld", n_peers); /* then each socket's port: its drops are in /proc */
    for (long j = 0; j < per_addr; j++) {
        struct sockaddr_in me;
        socklen_t len = sizeof me;
        if (getsockname(socks[j], (struct sockaddr *)&me, &len) < 0) die("getsockname");
        printf(" %d", ntohs(me.sin_port));
    }
    printf("\n");
    fflush(stdout);

    /* the periodic order: slot by slot over the IPs (as Sender.order), so consecutive
       sends come from different IPs and share a socket */
    long n_ips = (n_peers + per_addr - 1) / per_addr;
    long pos_slot = 0, pos_ip = 0, sent = 0;
    double rate = n_peers / PERIOD;
    long max_burst = (long)(rate * 0.002) > 16 ? (long)(rate * 0.002) : 16;
    int started = 0;
    double start = 0;
    struct epoll_event evs[64];
    while (!quit) {
        double now = now_mono();
        long due = 0, owed = 0;
        if (running && !started && now >= start_at) {
            started = 1;
            start = now;
            sent = 0;
        }
        if (started) {
            due = (long)((now - start) * rate) - sent;
            if (due > max_burst) {
                owed = due - max_burst;
                due = max_burst;
            }
            for (long i = 0; i < due; i++) {
                long k = pos_ip * per_addr + pos_slot;
                if (k < n_peers && !silenced[k] && !waiting[k]) request(k, now);
                if (++pos_ip == n_ips) {
                    pos_ip = 0;
                    if (++pos_slot == per_addr) pos_slot = 0;
                }
            }
            if (due > 0) sent += due;
            while (ring_len && ring[ring_head].at <= now) {
                struct due d = ring[ring_head];
                ring_head = (ring_head + 1) % ring_cap;
                ring_len--;
                if (waiting[d.peer] && seqs[d.peer] == d.seq && !silenced[d.peer]) {
                    c_retries++;
                    request(d.peer, now);
                }
            }
            if (out_n) flush();
        }
        /* wait up to 1 ms (about rate / 1000 heartbeats fall due meanwhile, sent in one
           batch); at once only while behind: polling the rest of the time would take a
           core from the server on a small machine */
        int timeout = owed > 0 ? 0 : 1;
        int r = epoll_wait(epfd, evs, 64, timeout);
        now = now_mono();
        for (int i = 0; i < r; i++) {
            if (evs[i].data.u32 == UINT32_MAX)
                read_commands();
            else
                receive((int)evs[i].data.u32, now);
        }
        if (out_n) flush(); /* RegisterPk sent at once on request_pk */
    }
    return 0;
}
