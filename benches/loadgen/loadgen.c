/*
 * loadgen: a lean websocket load generator for Satchel's benchmarks.
 *
 * One process, one thread, one epoll loop, loopback only. It opens N
 * subscriber websockets and one publisher websocket against a server, then
 * runs a closed-loop publisher: at most --inflight messages are outstanding,
 * and a message stops being outstanding once every subscriber that should
 * receive it has received it. Subscribers never decode JSON: each read is
 * walked frame by frame through the headers, and only a short prefix of each
 * payload is looked at, for the sequence number ("s":"0000000042"). Send
 * times stay in the client (indexed by sequence number), so latency is the
 * time from the publisher's write to a subscriber's read of that frame,
 * measured on one clock with one clock read per read() call.
 *
 * Modes:
 *   loadgen fanout [options]   measure deliveries/s, latency, losses
 *   loadgen idle   [options]   open the connections, print one JSON line
 *                              ({"ready":N,...}), hold them open until stdin
 *                              closes or --hold seconds pass
 *
 * With --port2, every other subscriber connects to a second server (two
 * nodes sharing a broker); the publisher stays on --port.
 *
 * Everything is bounded: connection count, run time, every wait.
 * The result is one JSON object on stdout. Build: cc -O2 -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>

#define MAX_EVENTS 1024
#define READ_SIZE (256 * 1024)
#define CARRY_MAX 128   /* a partial frame header plus payload prefix */
#define PREFIX 64       /* payload bytes looked at per frame */
#define SLOTS 65536     /* send times / receive counts by sequence number */
#define HIST_FINE 20000 /* 1 us buckets up to 20 ms */
#define HIST_COARSE 100000 /* then 100 us buckets up to 10 s */

enum { S_CONNECTING, S_HANDSHAKE, S_WAIT_FIRST, S_JOINING, S_READY, S_CLOSED };

typedef struct {
    int fd;
    int state;
    int is_pub;
    int joiner;
    int port;           /* the server this connection goes to (--port or --port2) */
    uint8_t *hs;        /* handshake response buffer, freed once open */
    size_t hs_len;
    uint64_t skip;      /* payload bytes of the current frame still to skip */
    uint32_t carry_len;
    uint8_t carry[CARRY_MAX];
    uint64_t received;  /* sequenced frames received */
    int64_t last_seq;
    uint64_t reordered;
} conn_t;

/* options */
static const char *opt_host = "127.0.0.1";
static int opt_port = 0;
static int opt_port2 = 0;              /* a second server: odd subscribers go there (two nodes) */
static const char *opt_path = "/";
static const char *opt_cookie = NULL;
static int opt_subs = 1000;
static int opt_joiners = 0;            /* first J subscribers send --join-frame */
static const char *opt_join_frame = NULL;
static const char *opt_join_ack = NULL;
static int opt_channel = 0;            /* messages go to the joiners only */
static const char *opt_extra = "";     /* extra JSON fields in each message */
static int opt_size = 100;             /* payload bytes of each message */
static int opt_inflight = 8;
static double opt_warmup = 1.0;
static double opt_duration = 5.0;
static double opt_setup_timeout = 60.0;
static double opt_stall = 5.0;
static double opt_hold = 60.0;
static int opt_server_pid = 0;
static int opt_server_pid2 = 0;
static int opt_concurrent_handshakes = 128;

static conn_t *conns;
static int nconns;
static conn_t *pub;
static int epfd;

/* per sequence slot */
static uint32_t slot_count[SLOTS];
static uint64_t slot_sent_ns[SLOTS];
static uint64_t seq_next = 1;         /* next sequence number to send */
static uint64_t seq_done = 0;         /* messages completed */
static uint64_t inflight = 0;
static uint64_t expected_per_msg = 0;

/* counters */
static int measuring = 0;
static uint64_t window_deliveries = 0, window_messages = 0;
static uint64_t port2_deliveries = 0; /* of total_deliveries, to subscribers of --port2 */
static uint64_t total_deliveries = 0, misrouted = 0, other_frames = 0, closes_seen = 0;
static uint32_t *hist;
static uint64_t hist_n = 0, lat_max_ns = 0;
static uint64_t last_progress_ns = 0;

static uint8_t *rbuf;
static char message_template[4096];
static size_t message_len;
static size_t seq_offset;
static uint8_t mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};
static uint8_t pub_out[1 << 20];
static size_t pub_out_len = 0;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double pid_cpu_seconds(int pid) {
    if (!pid) return 0;
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    unsigned long utime = 0, stime = 0;
    /* after ") ": state(3) ... utime is field 14, stime 15 */
    int field = 2;
    for (char *q = p + 1; *q; q++) {
        if (*q == ' ') {
            field++;
            if (field == 14) utime = strtoul(q + 1, NULL, 10);
            if (field == 15) { stime = strtoul(q + 1, NULL, 10); break; }
        }
    }
    return (double)(utime + stime) / sysconf(_SC_CLK_TCK);
}

static double server_cpu_seconds(void) { return pid_cpu_seconds(opt_server_pid); }

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void record_latency(uint64_t ns) {
    uint64_t us = ns / 1000;
    size_t i;
    if (us < HIST_FINE) i = us;
    else {
        uint64_t c = (us - HIST_FINE) / 100;
        if (c >= HIST_COARSE) c = HIST_COARSE - 1;
        i = HIST_FINE + c;
    }
    hist[i]++;
    hist_n++;
    if (ns > lat_max_ns) lat_max_ns = ns;
}

static double hist_percentile(double p) {
    if (!hist_n) return 0;
    uint64_t target = (uint64_t)(p * hist_n);
    if (target >= hist_n) target = hist_n - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_FINE + HIST_COARSE; i++) {
        seen += hist[i];
        if (seen > target) {
            if (i < HIST_FINE) return (double)i + 0.5;
            return HIST_FINE + (double)(i - HIST_FINE) * 100 + 50;
        }
    }
    return 0;
}

static void set_nonblock(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static void ep_mod(conn_t *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
}

static void start_connect(conn_t *c) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->port)};
    inet_pton(AF_INET, opt_host, &sa.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) die("connect");
    c->state = S_CONNECTING;
    c->last_seq = -1;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl add");
}

static int write_all_small(int fd, const void *data, size_t len) {
    /* only for handshakes and small control frames: the kernel buffer of a
     * fresh connection always takes them */
    const uint8_t *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) { struct pollfd pf = {fd, POLLOUT, 0}; poll(&pf, 1, 100); continue; }
            return -1;
        }
        p += n;
        len -= n;
    }
    return 0;
}

static size_t client_frame(uint8_t *out, int opcode, const uint8_t *payload, size_t len) {
    size_t h = 0;
    out[h++] = 0x80 | opcode;
    if (len < 126) out[h++] = 0x80 | len;
    else if (len < 65536) { out[h++] = 0x80 | 126; out[h++] = len >> 8; out[h++] = len & 0xff; }
    else { out[h++] = 0x80 | 127; for (int i = 7; i >= 0; i--) out[h++] = (len >> (8 * i)) & 0xff; }
    memcpy(out + h, mask_key, 4);
    h += 4;
    for (size_t i = 0; i < len; i++) out[h + i] = payload[i] ^ mask_key[i & 3];
    return h + len;
}

static void send_handshake(conn_t *c) {
    char req[8192];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     opt_path, opt_host, c->port, opt_cookie ? "Cookie: " : "", opt_cookie ? opt_cookie : "",
                     opt_cookie ? "\r\n" : "");
    if (write_all_small(c->fd, req, n) < 0) die("handshake write");
    c->state = S_HANDSHAKE;
    c->hs = malloc(16384);
    c->hs_len = 0;
    ep_mod(c, EPOLLIN);
}

static void send_text(conn_t *c, const char *text) {
    uint8_t frame[8192];
    size_t n = client_frame(frame, 1, (const uint8_t *)text, strlen(text));
    if (write_all_small(c->fd, frame, n) < 0) die("write");
}

static int ready_count = 0, failed_count = 0;

static void became_ready(conn_t *c) {
    c->state = S_READY;
    ready_count++;
}

static void conn_failed(conn_t *c, const char *why) {
    if (c->state == S_CLOSED) return;
    if (c->state != S_READY) {
        failed_count++;
        if (failed_count <= 3) fprintf(stderr, "loadgen: a connection failed during setup: %s\n", why);
    } else {
        closes_seen++;
    }
    c->state = S_CLOSED;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
}

static void on_sequenced(conn_t *c, uint64_t seq, uint64_t now) {
    if (c->is_pub) return;
    if (opt_channel && !c->joiner) { misrouted++; return; }
    if ((int64_t)seq <= c->last_seq) c->reordered++;
    c->last_seq = seq;
    c->received++;
    total_deliveries++;
    if (c->port != opt_port) port2_deliveries++;
    uint32_t slot = seq & (SLOTS - 1);
    if (measuring) {
        window_deliveries++;
        record_latency(now - slot_sent_ns[slot]);
    }
    if (++slot_count[slot] == expected_per_msg) {
        inflight--;
        seq_done++;
        if (measuring) window_messages++;
        last_progress_ns = now;
    }
}

static void on_frame(conn_t *c, int opcode, const uint8_t *prefix, size_t prefix_len, uint64_t plen, uint64_t now) {
    if (opcode == 1) {
        /* the sequence marker sits at a fixed offset in our own messages;
         * look for it near there, never decode the JSON */
        if (prefix_len >= seq_offset + 10 && memcmp(prefix + seq_offset - 5, "\"s\":\"", 5) == 0) {
            uint64_t seq = 0;
            const uint8_t *d = prefix + seq_offset;
            for (int i = 0; i < 10; i++) seq = seq * 10 + (d[i] - '0');
            on_sequenced(c, seq, now);
            return;
        }
        other_frames++;
        if (c->state == S_WAIT_FIRST) {
            if (c->joiner && opt_join_frame) {
                send_text(c, opt_join_frame);
                c->state = S_JOINING;
            } else {
                became_ready(c);
            }
        } else if (c->state == S_JOINING) {
            if (!opt_join_ack || memmem(prefix, prefix_len, opt_join_ack, strlen(opt_join_ack))) became_ready(c);
        }
    } else if (opcode == 8) {
        conn_failed(c, "server closed the websocket");
    } else if (opcode == 9 && plen <= prefix_len) {
        uint8_t frame[256];
        size_t n = client_frame(frame, 0xA, prefix, plen);
        write_all_small(c->fd, frame, n);
    }
}

/* Walk frames in data; keep an incomplete header+prefix in c->carry. */
static void feed(conn_t *c, const uint8_t *buf, size_t len, uint64_t now) {
    size_t pos = 0;
    if (c->skip) {
        uint64_t take = c->skip < len ? c->skip : len;
        pos += take;
        c->skip -= take;
    }
    while (pos < len && c->state != S_CLOSED) {
        size_t avail = len - pos;
        if (avail < 2) break;
        const uint8_t *p = buf + pos;
        uint64_t plen = p[1] & 0x7f;
        size_t hdr = 2;
        if (plen == 126) {
            if (avail < 4) break;
            plen = ((uint64_t)p[2] << 8) | p[3];
            hdr = 4;
        } else if (plen == 127) {
            if (avail < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = (plen << 8) | p[2 + i];
            hdr = 10;
        }
        if (p[1] & 0x80) hdr += 4; /* a masked server frame would be a server bug; skip the key */
        size_t want = plen < PREFIX ? plen : PREFIX;
        if (avail < hdr + want) break;
        on_frame(c, p[0] & 0x0f, p + hdr, want, plen, now);
        if (avail - hdr >= plen) {
            pos += hdr + plen;
        } else {
            c->skip = plen - (avail - hdr);
            pos = len;
        }
    }
    size_t rest = len - pos;
    if (rest > CARRY_MAX) { fprintf(stderr, "loadgen: carry overflow\n"); exit(2); }
    if (rest) memmove(c->carry, buf + pos, rest);
    c->carry_len = rest;
}

static void on_handshake_data(conn_t *c, uint64_t now) {
    ssize_t n = read(c->fd, c->hs + c->hs_len, 16384 - c->hs_len - 1);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN) return;
        conn_failed(c, "closed during the handshake");
        return;
    }
    c->hs_len += n;
    c->hs[c->hs_len] = 0;
    char *end = strstr((char *)c->hs, "\r\n\r\n");
    if (!end) {
        if (c->hs_len >= 16383) conn_failed(c, "handshake response too long");
        return;
    }
    if (strncmp((char *)c->hs, "HTTP/1.1 101", 12) != 0) {
        char line[128];
        snprintf(line, sizeof line, "refused: %.100s", (char *)c->hs);
        conn_failed(c, line);
        return;
    }
    c->state = S_WAIT_FIRST;
    size_t head = (uint8_t *)end + 4 - c->hs;
    uint8_t *hs = c->hs;
    size_t left = c->hs_len - head;
    c->hs = NULL;
    if (left) feed(c, hs + head, left, now);
    free(hs);
}

static void on_readable(conn_t *c) {
    for (;;) {
        uint8_t *start = rbuf + CARRY_MAX - c->carry_len;
        if (c->carry_len) memcpy(start, c->carry, c->carry_len);
        ssize_t n = read(c->fd, rbuf + CARRY_MAX, READ_SIZE);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
            conn_failed(c, "connection closed");
            return;
        }
        uint64_t now = now_ns();
        feed(c, start, c->carry_len + n, now);
        if (n < READ_SIZE) return;
    }
}

static void flush_pub(void) {
    while (pub_out_len) {
        ssize_t n = write(pub->fd, pub_out, pub_out_len);
        if (n < 0) {
            if (errno == EAGAIN) { ep_mod(pub, EPOLLIN | EPOLLOUT); return; }
            die("publisher write");
        }
        memmove(pub_out, pub_out + n, pub_out_len - n);
        pub_out_len -= n;
    }
    ep_mod(pub, EPOLLIN);
}

static int sending = 0;

static void publish_more(void) {
    if (!sending || pub->state != S_READY) return;
    int wrote = 0;
    uint64_t now = now_ns();
    while (inflight < (uint64_t)opt_inflight && pub_out_len + message_len + 16 < sizeof pub_out) {
        uint64_t seq = seq_next++;
        char digits[11];
        snprintf(digits, sizeof digits, "%010llu", (unsigned long long)(seq % 10000000000ull));
        memcpy(message_template + seq_offset, digits, 10);
        uint32_t slot = seq & (SLOTS - 1);
        if (slot_count[slot] != 0 && slot_count[slot] < expected_per_msg) {
            fprintf(stderr, "loadgen: sequence window wrapped onto an incomplete message\n");
            exit(2);
        }
        slot_count[slot] = 0;
        slot_sent_ns[slot] = now;
        pub_out_len += client_frame(pub_out + pub_out_len, 1, (uint8_t *)message_template, message_len);
        inflight++;
        wrote = 1;
    }
    if (wrote) flush_pub();
}

static void build_template(void) {
    /* {"action":"broadcast","s":"0000000000","userId":"<24>"<extra>,"p":"<pad>"} */
    const char *head = "{\"action\":\"broadcast\",\"s\":\"";
    seq_offset = strlen(head);
    int base = snprintf(message_template, sizeof message_template,
                        "%s0000000000\",\"userId\":\"000000000000000000000000\"%s,\"p\":\"", head, opt_extra);
    int pad = opt_size - base - 2;
    if (pad < 0) pad = 0;
    memset(message_template + base, 'x', pad);
    memcpy(message_template + base + pad, "\"}", 3);
    message_len = base + pad + 2;
}

static void event_loop_once(int timeout_ms) {
    struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(epfd, events, MAX_EVENTS, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return;
        die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
        conn_t *c = events[i].data.ptr;
        if (c->state == S_CLOSED) continue;
        if (c->state == S_CONNECTING) {
            if (events[i].events & (EPOLLERR | EPOLLHUP)) { conn_failed(c, "connect failed"); continue; }
            if (events[i].events & EPOLLOUT) send_handshake(c);
            continue;
        }
        if (c == pub && (events[i].events & EPOLLOUT)) flush_pub();
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            if (c->state == S_HANDSHAKE) on_handshake_data(c, now_ns());
            else on_readable(c);
        }
    }
}

static int in_setup(conn_t *c) { return c->state != S_READY && c->state != S_CLOSED; }

static void setup(void) {
    /* subscribers first, at most opt_concurrent_handshakes in progress */
    int started = 0;
    uint64_t deadline = now_ns() + (uint64_t)(opt_setup_timeout * 1e9);
    while (ready_count + failed_count < nconns) {
        int pending = 0;
        for (int i = 0; i < started; i++) pending += in_setup(&conns[i]);
        while (started < nconns && pending < opt_concurrent_handshakes) {
            start_connect(&conns[started++]);
            pending++;
        }
        event_loop_once(10);
        if (now_ns() > deadline) {
            fprintf(stderr, "loadgen: setup timed out: %d ready, %d failed of %d\n", ready_count, failed_count, nconns);
            break;
        }
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen fanout|idle --port P [--port2 P2 --server-pid2 PID2] [--host H] [--path /] [--cookie C] [--subs N]\n"
            "  [--joiners J --join-frame JSON --join-ack SUBSTR] [--channel] [--extra ',\"k\":\"v\"']\n"
            "  [--size BYTES] [--inflight K] [--warmup S] [--duration S] [--server-pid PID] [--hold S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    const char *mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (OPT("--host")) opt_host = v;
        else if (OPT("--port")) opt_port = atoi(v);
        else if (OPT("--port2")) opt_port2 = atoi(v);
        else if (OPT("--path")) opt_path = v;
        else if (OPT("--cookie")) opt_cookie = v;
        else if (OPT("--subs")) opt_subs = atoi(v);
        else if (OPT("--joiners")) opt_joiners = atoi(v);
        else if (OPT("--join-frame")) opt_join_frame = v;
        else if (OPT("--join-ack")) opt_join_ack = v;
        else if (OPT("--extra")) opt_extra = v;
        else if (OPT("--size")) opt_size = atoi(v);
        else if (OPT("--inflight")) opt_inflight = atoi(v);
        else if (OPT("--warmup")) opt_warmup = atof(v);
        else if (OPT("--duration")) opt_duration = atof(v);
        else if (OPT("--setup-timeout")) opt_setup_timeout = atof(v);
        else if (OPT("--stall")) opt_stall = atof(v);
        else if (OPT("--hold")) opt_hold = atof(v);
        else if (OPT("--server-pid")) opt_server_pid = atoi(v);
        else if (OPT("--server-pid2")) opt_server_pid2 = atoi(v);
        else if (strcmp(a, "--channel") == 0) opt_channel = 1;
        else usage();
    }
    if (!opt_port || opt_subs < 1 || opt_subs > 60000 || opt_inflight < 1 || opt_inflight > SLOTS / 4) usage();
    if (strcmp(opt_host, "127.0.0.1") != 0 && strcmp(opt_host, "localhost") != 0) {
        fprintf(stderr, "loadgen: loopback only\n");
        return 2;
    }
    opt_host = "127.0.0.1";
    if (opt_duration > 120 || opt_hold > 600 || opt_warmup > 60) { fprintf(stderr, "loadgen: bounded runs only\n"); return 2; }

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    rbuf = malloc(READ_SIZE + CARRY_MAX);
    hist = calloc(HIST_FINE + HIST_COARSE, sizeof *hist);
    build_template();
    int is_fanout = strcmp(mode, "fanout") == 0;
    if (!is_fanout && strcmp(mode, "idle") != 0) usage();

    nconns = opt_subs + (is_fanout ? 1 : 0);
    conns = calloc(nconns, sizeof *conns);
    for (int i = 0; i < nconns; i++) conns[i].port = opt_port;
    /* Two nodes: every other subscriber on the second, the publisher on the first. */
    for (int i = 1; opt_port2 && i < opt_subs; i += 2) conns[i].port = opt_port2;
    for (int i = 0; i < opt_subs; i++) conns[i].joiner = i < opt_joiners;
    if (is_fanout) {
        pub = &conns[opt_subs];
        pub->is_pub = 1;
    }
    epfd = epoll_create1(0);
    uint64_t t_setup = now_ns();
    setup();
    double setup_s = (now_ns() - t_setup) / 1e9;

    if (!is_fanout) {
        printf("{\"mode\":\"idle\",\"ready\":%d,\"failed\":%d,\"setup_s\":%.3f}\n", ready_count, failed_count, setup_s);
        fflush(stdout);
        set_nonblock(0);
        uint64_t end = now_ns() + (uint64_t)(opt_hold * 1e9);
        while (now_ns() < end) {
            struct pollfd pf = {0, POLLIN, 0};
            if (poll(&pf, 1, 0) > 0) {
                char b[64];
                ssize_t r = read(0, b, sizeof b);
                if (r == 0 || (r < 0 && errno != EAGAIN)) break;
            }
            event_loop_once(100);
        }
        return 0;
    }

    if (ready_count < nconns || pub->state != S_READY) {
        printf("{\"mode\":\"fanout\",\"error\":\"setup failed\",\"ready\":%d,\"failed\":%d,\"wanted\":%d}\n", ready_count,
               failed_count, nconns);
        return 1;
    }
    expected_per_msg = opt_channel ? (uint64_t)opt_joiners : (uint64_t)opt_subs;

    /* warmup, then the measured window, then drain */
    sending = 1;
    uint64_t t0 = now_ns();
    last_progress_ns = t0;
    uint64_t t_measure = t0 + (uint64_t)(opt_warmup * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(opt_duration * 1e9);
    double cpu0 = 0, scpu0 = 0, s2cpu0 = 0, s2cpu1 = 0;
    uint64_t tm0 = 0, tm1 = 0;
    double cpu1 = 0, scpu1 = 0;
    int stalled = 0;
    publish_more();
    for (;;) {
        event_loop_once(50);
        uint64_t now = now_ns();
        if (!measuring && now >= t_measure && tm0 == 0) {
            measuring = 1;
            tm0 = now;
            cpu0 = cpu_seconds();
            scpu0 = server_cpu_seconds();
            s2cpu0 = pid_cpu_seconds(opt_server_pid2);
        }
        if (measuring && now >= t_end) {
            measuring = 0;
            tm1 = now;
            cpu1 = cpu_seconds();
            scpu1 = server_cpu_seconds();
            s2cpu1 = pid_cpu_seconds(opt_server_pid2);
            break;
        }
        if (now - last_progress_ns > (uint64_t)(opt_stall * 1e9)) {
            stalled = 1;
            break;
        }
        publish_more();
    }
    if (measuring) { /* stalled inside the window */
        measuring = 0;
        tm1 = now_ns();
        cpu1 = cpu_seconds();
        scpu1 = server_cpu_seconds();
        s2cpu1 = pid_cpu_seconds(opt_server_pid2);
    }
    sending = 0;
    uint64_t drain_end = now_ns() + 3000000000ull;
    while (inflight && now_ns() < drain_end) event_loop_once(20);
    /* a short grace period to see late or misrouted frames */
    uint64_t grace_end = now_ns() + 200000000ull;
    while (now_ns() < grace_end) event_loop_once(20);

    uint64_t sent = seq_next - 1;
    uint64_t lost = sent * expected_per_msg - total_deliveries;
    uint64_t reordered = 0;
    int open_subs = 0;
    for (int i = 0; i < opt_subs; i++) {
        reordered += conns[i].reordered;
        open_subs += conns[i].state == S_READY;
    }
    double wall = tm0 && tm1 ? (tm1 - tm0) / 1e9 : 0;
    printf("{\"mode\":\"fanout\",\"subscribers\":%d,\"receivers_per_message\":%llu,\"inflight\":%d,\"message_bytes\":%zu,"
           "\"setup_s\":%.3f,\"window_s\":%.3f,\"messages_per_s\":%.1f,\"deliveries_per_s\":%.1f,"
           "\"latency_us\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f,\"samples\":%llu},"
           "\"sent\":%llu,\"delivered\":%llu,\"lost\":%llu,\"misrouted\":%llu,\"reordered\":%llu,"
           "\"closed_by_server\":%llu,\"open_subscribers\":%d,\"stalled\":%s,"
           "\"loadgen_cpu\":%.3f,\"server_cpu\":%.3f,\"server2_cpu\":%.3f,\"delivered_port2\":%llu}\n",
           opt_subs, (unsigned long long)expected_per_msg, opt_inflight, message_len, setup_s, wall,
           wall ? window_messages / wall : 0, wall ? window_deliveries / wall : 0, hist_percentile(0.50),
           hist_percentile(0.99), lat_max_ns / 1000.0, (unsigned long long)hist_n, (unsigned long long)sent,
           (unsigned long long)total_deliveries, (unsigned long long)lost, (unsigned long long)misrouted,
           (unsigned long long)reordered, (unsigned long long)closes_seen, open_subs, stalled ? "true" : "false",
           wall ? (cpu1 - cpu0) / wall : 0, wall && opt_server_pid ? (scpu1 - scpu0) / wall : -1,
           wall && opt_server_pid2 ? (s2cpu1 - s2cpu0) / wall : -1, (unsigned long long)port2_deliveries);
    return 0;
}
