/*
 * dirgen: a lean load generator for the Directus subscription fan-out bench
 * (benches/README.md, "Permissions"): Directus core realtime subscribers on
 * `/websocket`, each signed in as a user of some role, and one REST client
 * that creates items as fast as the closed loop allows.
 *
 * One process, one thread, one epoll loop, loopback only; a sibling of
 * loadgen.c and siogen.c (same histogram); clocks, CPU counters, websocket
 * framing and small writes come from wsclient.h, shared with resgen.c.
 *
 * Subscribers (--conns FILE: one line per connection, "<role index> <access
 * token>"): each opens `GET /websocket`, sends the core handshake
 * `{"type":"auth","access_token":"<token>"}` as its first frame (what
 * @directus/sdk's realtime() does in handshake mode), waits for
 * `{"type":"auth","status":"ok"`, sends --subscribe (default
 * `{"type":"subscribe","collection":"articles","uid":"1"}`) and waits for
 * `{"type":"subscription","event":"init"`. Core pings (`{"type":"ping"}`)
 * are answered `{"type":"pong"}`.
 *
 * The publisher: --inflight keep-alive HTTP/1.1 connections, each with one
 * `POST --post-path` outstanding (`Authorization: --post-auth`). The body of
 * create number `seq` is line `seq % L` of --bodies FILE (L lines), whose
 * `"seq":"0000000000"` is overwritten with seq (10 digits). Closed loop: at
 * most --inflight creates are outstanding, and a create stops being
 * outstanding once its answer is back and every subscriber whose role
 * admits it has its event. Who admits what is given by --mask R:BITS (one
 * per role, BITS a string of L '0'/'1': role R admits create seq iff
 * BITS[seq % L] is '1'); dirgen only uses it for the closed loop and the
 * losses - the runner checks every connection's deliveries itself, from
 * what is reported.
 *
 * Unlike loadgen, each event is read whole (frames are reassembled across
 * reads): `{"type":"subscription","event":"create","data":[{...}],"uid":"1"}`.
 * The item's top-level keys are walked (no values decoded but "seq"); the
 * keys, in order and comma-joined, are the event's signature. Per
 * connection the result reports: events received, duplicates, events out
 * of order, the set of signatures seen (a bit mask into "signatures") and
 * a bitmap of the seqs received (hex, bit s of byte s/8 = seq s), so that
 * the runner can check that each subscriber received exactly the items,
 * and only the fields, its role admits.
 *
 * Latency = subscriber read time - publisher write time of that create, on
 * one clock (send times stay in the client; one clock read per read()).
 * The create's answer latency (write -> answer read) is shown beside it.
 *
 * Everything is bounded: connection count, run time, every wait.
 * The result is one JSON object on stdout. Build: cc -O2 -o dirgen dirgen.c
 */
#define _GNU_SOURCE
#include "wsclient.h" /* clocks, CPU counters, websocket framing, small writes */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 1024
#define READ_SIZE (256 * 1024)
#define FRAME_MAX (256 * 1024) /* larger frames are skipped (and counted) */
#define HIST_FINE 20000        /* 1 us buckets up to 20 ms */
#define HIST_COARSE 100000     /* then 100 us buckets up to 10 s */
#define MAX_ROLES 16
#define MAX_BODIES 256
#define MAX_SIGS 32
#define SIG_MAX 1024
#define HTTP_IN 65536

enum { S_CONNECTING, S_HANDSHAKE, S_AUTH, S_SUBSCRIBING, S_READY, S_CLOSED };

typedef struct {
    int fd;
    int state;
    int is_http;
    int role;
    const char *token;
    /* websocket */
    uint8_t *hs;
    size_t hs_len;
    uint8_t *carry; /* an incomplete frame, kept between reads */
    size_t carry_len, carry_cap;
    uint64_t skip; /* bytes of an oversize frame still to skip */
    uint64_t received, duplicates, reordered, unparsed;
    int64_t last_seq;
    uint32_t sigmask;
    uint8_t *seen; /* bitmap by seq */
    /* http */
    uint64_t seq;  /* the create outstanding on this connection (0: none) */
    char in[HTTP_IN];
    size_t in_len;
} conn_t;

/* options */
static const char *opt_host = "127.0.0.1";
static int opt_port = 0;
static const char *opt_path = "/websocket";
static const char *opt_conns_file = NULL;
static const char *opt_bodies_file = NULL;
static const char *opt_subscribe = "{\"type\":\"subscribe\",\"collection\":\"articles\",\"uid\":\"1\"}";
static const char *opt_post_path = "/items/articles";
static const char *opt_post_auth = NULL;
static int opt_inflight = 8;
static double opt_warmup = 1.0;
static double opt_duration = 5.0;
static double opt_setup_timeout = 90.0;
static double opt_stall = 5.0;
static double opt_drain = 5.0;
static int opt_server_pid = 0;
static int opt_concurrent_handshakes = 64;
static uint64_t opt_max_creates = 200000;

static conn_t *subs;
static int nsubs;
static conn_t *https;
static int epfd;

static char *bodies[MAX_BODIES];
static size_t body_len[MAX_BODIES], body_seq_off[MAX_BODIES];
static int nbodies = 0;
static char masks[MAX_ROLES][MAX_BODIES + 1];
static int nroles = 0;
static uint64_t role_conns[MAX_ROLES];
static uint64_t expected_by_phase[MAX_BODIES]; /* receivers of a create, by seq % L */

/* per seq (1..opt_max_creates) */
static uint64_t *sent_ns;
static uint32_t *delivered;
static uint8_t *answered; /* 0 outstanding, 1 2xx, 2 other */

static uint64_t seq_next = 1, outstanding = 0, completed = 0;
static int sending = 0, measuring = 0;
static uint64_t window_deliveries = 0, window_creates = 0, total_deliveries = 0, expected_total = 0;
static uint64_t non_2xx = 0, closes_seen = 0, other_frames = 0, oversize = 0, unexpected = 0;
static uint64_t last_progress_ns = 0;
static uint32_t *hist, *ack_hist;
static uint64_t hist_n = 0, lat_max_ns = 0, ack_n = 0, ack_max_ns = 0;
static char first_error[512] = "";
static char first_other[256] = "";

static char sigs[MAX_SIGS][SIG_MAX];
static int nsigs = 0;

static uint8_t *rbuf;
static int ready_count = 0, failed_count = 0;

static uint64_t now_ns(void) { return ws_now_ns(); }

static double cpu_seconds(void) { return ws_cpu_seconds(); }

static double server_cpu_seconds(void) { return ws_process_cpu_seconds(opt_server_pid); }

static double machine_busy_seconds(void) { return ws_machine_busy_seconds(); }

static void die(const char *what) {
    fprintf(stderr, "dirgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void record(uint32_t *h, uint64_t *n, uint64_t *max, uint64_t ns) {
    uint64_t us = ns / 1000;
    size_t i;
    if (us < HIST_FINE) i = us;
    else {
        uint64_t c = (us - HIST_FINE) / 100;
        if (c >= HIST_COARSE) c = HIST_COARSE - 1;
        i = HIST_FINE + c;
    }
    h[i]++;
    (*n)++;
    if (ns > *max) *max = ns;
}

static double percentile(const uint32_t *h, uint64_t n, double p) {
    if (!n) return 0;
    uint64_t target = (uint64_t)(p * n);
    if (target >= n) target = n - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_FINE + HIST_COARSE; i++) {
        seen += h[i];
        if (seen > target) {
            if (i < HIST_FINE) return (double)i + 0.5;
            return HIST_FINE + (double)(i - HIST_FINE) * 100 + 50;
        }
    }
    return 0;
}

static void ep_mod(conn_t *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
}

static void start_connect(conn_t *c) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(opt_port)};
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

static int write_all_small(int fd, const void *data, size_t len) { return ws_write_all_small(fd, data, len); }

static size_t client_frame(uint8_t *out, int opcode, const uint8_t *payload, size_t len) {
    return ws_client_frame(out, opcode, payload, len);
}

static void send_text(conn_t *c, const char *text) {
    uint8_t frame[8192];
    size_t len = strlen(text);
    if (len > sizeof frame - 16) { fprintf(stderr, "dirgen: frame too long\n"); exit(2); }
    size_t n = client_frame(frame, 1, (const uint8_t *)text, len);
    if (write_all_small(c->fd, frame, n) < 0) die("write");
}

static void conn_failed(conn_t *c, const char *why) {
    if (c->state == S_CLOSED) return;
    if (c->state != S_READY) {
        failed_count++;
        if (failed_count <= 3) fprintf(stderr, "dirgen: a connection failed during setup: %s\n", why);
    } else {
        closes_seen++;
        if (closes_seen <= 3) fprintf(stderr, "dirgen: a connection closed: %s\n", why);
    }
    c->state = S_CLOSED;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
}

static void became_ready(conn_t *c) {
    c->state = S_READY;
    ready_count++;
}

/* -- the closed loop ------------------------------------------------------------- */

static void maybe_complete(uint64_t seq, uint64_t now) {
    if (answered[seq] && delivered[seq] == expected_by_phase[seq % nbodies]) {
        outstanding--;
        completed++;
        if (measuring) window_creates++;
        last_progress_ns = now;
    }
}

static int is_prefix(const uint8_t *p, size_t n, const char *s) {
    size_t k = strlen(s);
    return n >= k && memcmp(p, s, k) == 0;
}

/* index after a JSON string starting at p[i] == '"', or 0 if it is cut */
static size_t skip_string(const uint8_t *p, size_t n, size_t i) {
    for (i++; i < n; i++) {
        if (p[i] == '\\') i++;
        else if (p[i] == '"') return i + 1;
    }
    return 0;
}

/* index after the JSON value starting at p[i] (no validation: our own server's output) */
static size_t skip_value(const uint8_t *p, size_t n, size_t i) {
    if (i >= n) return 0;
    if (p[i] == '"') return skip_string(p, n, i);
    if (p[i] == '{' || p[i] == '[') {
        int depth = 0;
        while (i < n) {
            uint8_t ch = p[i];
            if (ch == '"') { i = skip_string(p, n, i); if (!i) return 0; continue; }
            if (ch == '{' || ch == '[') depth++;
            else if (ch == '}' || ch == ']') { if (--depth == 0) return i + 1; }
            i++;
        }
        return 0;
    }
    while (i < n && p[i] != ',' && p[i] != '}' && p[i] != ']') i++;
    return i;
}

static int signature_id(const char *sig) {
    for (int i = 0; i < nsigs; i++)
        if (strcmp(sigs[i], sig) == 0) return i;
    if (nsigs == MAX_SIGS) return MAX_SIGS - 1;
    snprintf(sigs[nsigs], SIG_MAX, "%s", sig);
    return nsigs++;
}

static void note_other(const uint8_t *p, size_t n) {
    other_frames++;
    if (!first_other[0]) {
        size_t k = n < sizeof first_other - 1 ? n : sizeof first_other - 1;
        for (size_t i = 0; i < k; i++) first_other[i] = (p[i] == '"' || p[i] == '\\' || p[i] < 32) ? '\'' : p[i];
        first_other[k] = 0;
    }
}

static const char EVENT_PREFIX[] = "{\"type\":\"subscription\",\"event\":\"create\",\"data\":[";

/* one create event: walk the item's top-level keys, read its seq */
static void on_event(conn_t *c, const uint8_t *p, size_t n, uint64_t now) {
    size_t i = sizeof EVENT_PREFIX - 1;
    if (i >= n || p[i] != '{') { c->unparsed++; return; }
    i++;
    char sig[SIG_MAX];
    size_t sl = 0;
    int64_t seq = -1;
    while (i < n && p[i] != '}') {
        if (p[i] == ',') { i++; continue; }
        if (p[i] != '"') { c->unparsed++; return; }
        size_t kend = skip_string(p, n, i);
        if (!kend || kend >= n || p[kend] != ':') { c->unparsed++; return; }
        size_t klen = kend - i - 2;
        if (sl + klen + 1 < SIG_MAX) {
            if (sl) sig[sl++] = ',';
            memcpy(sig + sl, p + i + 1, klen);
            sl += klen;
        }
        size_t v = kend + 1;
        if (klen == 3 && memcmp(p + i + 1, "seq", 3) == 0 && v + 12 <= n && p[v] == '"') {
            int64_t s = 0;
            for (int d = 1; d <= 10; d++) {
                if (!isdigit(p[v + d])) { s = -1; break; }
                s = s * 10 + (p[v + d] - '0');
            }
            seq = s;
        }
        i = skip_value(p, n, v);
        if (!i) { c->unparsed++; return; }
    }
    sig[sl] = 0;
    if (seq <= 0 || (uint64_t)seq >= seq_next || !sent_ns[seq]) { c->unparsed++; return; }
    c->sigmask |= 1u << signature_id(sig);
    if (c->seen[seq >> 3] & (1u << (seq & 7))) { c->duplicates++; return; }
    c->seen[seq >> 3] |= 1u << (seq & 7);
    if (seq <= c->last_seq) c->reordered++;
    c->last_seq = seq;
    c->received++;
    total_deliveries++;
    if (masks[c->role][seq % nbodies] != '1') unexpected++;
    if (measuring) {
        window_deliveries++;
        record(hist, &hist_n, &lat_max_ns, now - sent_ns[seq]);
    }
    delivered[seq]++;
    maybe_complete(seq, now);
}

static void on_text(conn_t *c, const uint8_t *p, size_t n, uint64_t now) {
    if (c->state == S_READY && is_prefix(p, n, EVENT_PREFIX)) { on_event(c, p, n, now); return; }
    if (is_prefix(p, n, "{\"type\":\"ping\"")) { send_text(c, "{\"type\":\"pong\"}"); return; }
    if (c->state == S_AUTH) {
        if (is_prefix(p, n, "{\"type\":\"auth\",\"status\":\"ok\"")) {
            send_text(c, opt_subscribe);
            c->state = S_SUBSCRIBING;
        } else {
            char why[200];
            snprintf(why, sizeof why, "auth refused: %.*s", (int)(n < 150 ? n : 150), (const char *)p);
            conn_failed(c, why);
        }
        return;
    }
    if (c->state == S_SUBSCRIBING) {
        if (is_prefix(p, n, "{\"type\":\"subscription\",\"event\":\"init\"")) became_ready(c);
        else {
            char why[200];
            snprintf(why, sizeof why, "subscribe refused: %.*s", (int)(n < 150 ? n : 150), (const char *)p);
            conn_failed(c, why);
        }
        return;
    }
    note_other(p, n);
}

static void on_frame(conn_t *c, int opcode, const uint8_t *p, size_t n, uint64_t now) {
    if (opcode == 1) on_text(c, p, n, now);
    else if (opcode == 8) conn_failed(c, "server closed the websocket");
    else if (opcode == 9 && n <= 125) {
        uint8_t frame[256];
        size_t k = client_frame(frame, 0xA, p, n);
        write_all_small(c->fd, frame, k);
    }
}

typedef struct {
    conn_t *c;
    uint64_t now;
} frame_ctx_t;

static int feed_frame(void *ctx, int opcode, const uint8_t *p, size_t n) {
    frame_ctx_t *f = ctx;
    on_frame(f->c, opcode, p, n, f->now);
    return f->c->state == S_CLOSED;
}

/* Walk whole frames in buf; keep an incomplete one in c->carry. */
static void feed(conn_t *c, const uint8_t *buf, size_t len, uint64_t now) {
    frame_ctx_t ctx = {c, now};
    size_t pos = ws_walk_frames(buf, len, FRAME_MAX, &c->skip, &oversize, feed_frame, &ctx);
    size_t rest = len - pos;
    if (rest > c->carry_cap) {
        c->carry_cap = rest < 4096 ? 4096 : rest;
        c->carry = realloc(c->carry, c->carry_cap);
        if (!c->carry) die("realloc");
    }
    if (rest) memmove(c->carry, buf + pos, rest);
    c->carry_len = rest;
}

static void on_ws_readable(conn_t *c) {
    for (;;) {
        uint8_t *start = rbuf + FRAME_MAX + 16 - c->carry_len;
        if (c->carry_len) memcpy(start, c->carry, c->carry_len);
        ssize_t n = read(c->fd, rbuf + FRAME_MAX + 16, READ_SIZE);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
            conn_failed(c, "connection closed");
            return;
        }
        feed(c, start, c->carry_len + n, now_ns());
        if (n < READ_SIZE || c->state == S_CLOSED) return;
    }
}

static void send_ws_handshake(conn_t *c) {
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     opt_path, opt_host, opt_port);
    if (write_all_small(c->fd, req, n) < 0) die("handshake write");
    c->state = S_HANDSHAKE;
    c->hs = malloc(16384);
    c->hs_len = 0;
    ep_mod(c, EPOLLIN);
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
        char line[160];
        snprintf(line, sizeof line, "refused: %.120s", (char *)c->hs);
        conn_failed(c, line);
        return;
    }
    char auth[4096];
    snprintf(auth, sizeof auth, "{\"type\":\"auth\",\"access_token\":\"%s\"}", c->token);
    send_text(c, auth);
    c->state = S_AUTH;
    size_t head = (uint8_t *)end + 4 - c->hs;
    uint8_t *hs = c->hs;
    size_t left = c->hs_len - head;
    c->hs = NULL;
    if (left) feed(c, hs + head, left, now);
    free(hs);
}

/* -- the HTTP publisher ------------------------------------------------------------ */

static void http_send(conn_t *h, uint64_t now) {
    uint64_t seq = seq_next++;
    int b = seq % nbodies;
    char digits[11];
    snprintf(digits, sizeof digits, "%010llu", (unsigned long long)seq);
    memcpy(bodies[b] + body_seq_off[b], digits, 10);
    char req[8192];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     opt_post_path, opt_host, opt_port, opt_post_auth, body_len[b], bodies[b]);
    h->seq = seq;
    sent_ns[seq] = now;
    outstanding++;
    expected_total += expected_by_phase[b];
    if (write_all_small(h->fd, req, n) < 0) die("request write");
}

static void publish_more(void) {
    if (!sending) return;
    uint64_t now = now_ns();
    for (int i = 0; i < opt_inflight && outstanding < (uint64_t)opt_inflight; i++) {
        conn_t *h = &https[i];
        if (h->state == S_READY && h->seq == 0 && seq_next < opt_max_creates) http_send(h, now);
    }
}

static void http_readable(conn_t *h) {
    for (;;) {
        ssize_t n = read(h->fd, h->in + h->in_len, HTTP_IN - 1 - h->in_len);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
            conn_failed(h, "the REST connection closed");
            return;
        }
        h->in_len += n;
        h->in[h->in_len] = 0;
        for (;;) {
            char *end = strstr(h->in, "\r\n\r\n");
            if (!end) break;
            size_t head = end + 4 - h->in;
            size_t clen = 0;
            for (char *q = h->in; q < end; q++) {
                if ((q == h->in || q[-1] == '\n') && strncasecmp(q, "content-length:", 15) == 0) {
                    clen = strtoul(q + 15, NULL, 10);
                    break;
                }
            }
            if (head + clen > HTTP_IN - 1) { fprintf(stderr, "dirgen: REST answer too long\n"); exit(2); }
            if (h->in_len < head + clen) break;
            int status = atoi(h->in + 9);
            uint64_t now = now_ns();
            uint64_t seq = h->seq;
            if (!seq) { fprintf(stderr, "dirgen: an answer nobody asked for\n"); exit(2); }
            h->seq = 0;
            if (status >= 200 && status < 300) answered[seq] = 1;
            else {
                answered[seq] = 2;
                non_2xx++;
                if (!first_error[0])
                    snprintf(first_error, sizeof first_error, "%d %.*s", status, (int)(clen < 300 ? clen : 300),
                             h->in + head);
                /* nobody will receive it: do not wait for deliveries */
                delivered[seq] = expected_by_phase[seq % nbodies];
            }
            if (measuring) record(ack_hist, &ack_n, &ack_max_ns, now - sent_ns[seq]);
            maybe_complete(seq, now);
            memmove(h->in, h->in + head + clen, h->in_len - head - clen);
            h->in_len -= head + clen;
            h->in[h->in_len] = 0;
        }
        if (h->in_len >= HTTP_IN - 1) { fprintf(stderr, "dirgen: REST header too long\n"); exit(2); }
    }
}

/* -- the loop ---------------------------------------------------------------------- */

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
            if (events[i].events & EPOLLOUT) {
                if (c->is_http) { c->state = S_READY; ready_count++; ep_mod(c, EPOLLIN); }
                else send_ws_handshake(c);
            }
            continue;
        }
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            if (c->is_http) http_readable(c);
            else if (c->state == S_HANDSHAKE) on_handshake_data(c, now_ns());
            else on_ws_readable(c);
        }
    }
}

static int in_setup(conn_t *c) { return c->state != S_READY && c->state != S_CLOSED; }

static void setup(void) {
    int started = 0;
    uint64_t deadline = now_ns() + (uint64_t)(opt_setup_timeout * 1e9);
    for (int i = 0; i < opt_inflight; i++) start_connect(&https[i]);
    while (ready_count + failed_count < nsubs + opt_inflight) {
        int pending = 0;
        for (int i = 0; i < started; i++) pending += in_setup(&subs[i]);
        while (started < nsubs && pending < opt_concurrent_handshakes) {
            start_connect(&subs[started++]);
            pending++;
        }
        event_loop_once(10);
        if (now_ns() > deadline) {
            fprintf(stderr, "dirgen: setup timed out: %d ready, %d failed of %d\n", ready_count, failed_count,
                    nsubs + opt_inflight);
            break;
        }
    }
}

static char *read_file(const char *path) {
    char *data = ws_read_file(path);
    if (!data) die(path);
    return data;
}

static void usage(void) {
    fprintf(stderr,
            "usage: dirgen fanout --port P --conns FILE --bodies FILE --mask R:BITS... --post-auth 'Bearer T'\n"
            "  [--path /websocket] [--subscribe JSON] [--post-path /items/articles] [--inflight K]\n"
            "  [--warmup S] [--duration S] [--drain S] [--server-pid PID] [--max-creates N]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "fanout") != 0) usage();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (OPT("--host")) opt_host = v;
        else if (OPT("--port")) opt_port = atoi(v);
        else if (OPT("--path")) opt_path = v;
        else if (OPT("--conns")) opt_conns_file = v;
        else if (OPT("--bodies")) opt_bodies_file = v;
        else if (OPT("--subscribe")) opt_subscribe = v;
        else if (OPT("--post-path")) opt_post_path = v;
        else if (OPT("--post-auth")) opt_post_auth = v;
        else if (OPT("--inflight")) opt_inflight = atoi(v);
        else if (OPT("--warmup")) opt_warmup = atof(v);
        else if (OPT("--duration")) opt_duration = atof(v);
        else if (OPT("--drain")) opt_drain = atof(v);
        else if (OPT("--stall")) opt_stall = atof(v);
        else if (OPT("--setup-timeout")) opt_setup_timeout = atof(v);
        else if (OPT("--server-pid")) opt_server_pid = atoi(v);
        else if (OPT("--max-creates")) opt_max_creates = strtoull(v, NULL, 10);
        else if (OPT("--mask")) {
            int r = atoi(v);
            const char *bits = strchr(v, ':');
            if (r < 0 || r >= MAX_ROLES || !bits || strlen(bits + 1) > MAX_BODIES) usage();
            snprintf(masks[r], sizeof masks[r], "%s", bits + 1);
            if (r + 1 > nroles) nroles = r + 1;
        } else usage();
    }
    if (!opt_port || !opt_conns_file || !opt_bodies_file || !opt_post_auth || opt_inflight < 1 || opt_inflight > 256 ||
        opt_max_creates < 2 || opt_max_creates > 10000000)
        usage();
    if (strcmp(opt_host, "127.0.0.1") != 0 && strcmp(opt_host, "localhost") != 0) {
        fprintf(stderr, "dirgen: loopback only\n");
        return 2;
    }
    opt_host = "127.0.0.1";
    if (opt_duration > 120 || opt_warmup > 60 || opt_drain > 60) { fprintf(stderr, "dirgen: bounded runs only\n"); return 2; }

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    /* bodies: one a line */
    char *text = read_file(opt_bodies_file);
    for (char *line = strtok(text, "\n"); line && nbodies < MAX_BODIES; line = strtok(NULL, "\n")) {
        char *mark = strstr(line, "\"seq\":\"0000000000\"");
        if (!mark) { fprintf(stderr, "dirgen: a body without \"seq\":\"0000000000\"\n"); return 2; }
        bodies[nbodies] = line;
        body_len[nbodies] = strlen(line);
        body_seq_off[nbodies] = mark - line + 7;
        nbodies++;
    }
    if (!nbodies) usage();
    for (int r = 0; r < nroles; r++)
        if ((int)strlen(masks[r]) != nbodies) { fprintf(stderr, "dirgen: mask %d is not %d long\n", r, nbodies); return 2; }

    /* connections: "<role> <token>" a line */
    char *ctext = read_file(opt_conns_file);
    int cap = 0;
    for (char *q = ctext; *q; q++) cap += *q == '\n';
    subs = calloc(cap + 1, sizeof *subs);
    size_t seen_bytes = opt_max_creates / 8 + 1;
    for (char *line = strtok(ctext, "\n"); line; line = strtok(NULL, "\n")) {
        char *space = strchr(line, ' ');
        if (!space) continue;
        *space = 0;
        conn_t *c = &subs[nsubs++];
        c->role = atoi(line);
        c->token = space + 1;
        if (c->role < 0 || c->role >= nroles) { fprintf(stderr, "dirgen: role %d has no --mask\n", c->role); return 2; }
        c->seen = calloc(seen_bytes, 1);
        role_conns[c->role]++;
    }
    if (nsubs < 1 || nsubs > 60000) usage();
    for (int b = 0; b < nbodies; b++)
        for (int r = 0; r < nroles; r++)
            if (masks[r][b] == '1') expected_by_phase[b] += role_conns[r];
    https = calloc(opt_inflight, sizeof *https);
    for (int i = 0; i < opt_inflight; i++) https[i].is_http = 1;

    sent_ns = calloc(opt_max_creates + 1, sizeof *sent_ns);
    delivered = calloc(opt_max_creates + 1, sizeof *delivered);
    answered = calloc(opt_max_creates + 1, 1);
    rbuf = malloc(FRAME_MAX + 16 + READ_SIZE);
    hist = calloc(HIST_FINE + HIST_COARSE, sizeof *hist);
    ack_hist = calloc(HIST_FINE + HIST_COARSE, sizeof *ack_hist);
    epfd = epoll_create1(0);

    uint64_t t_setup = now_ns();
    setup();
    double setup_s = (now_ns() - t_setup) / 1e9;
    if (ready_count < nsubs + opt_inflight) {
        printf("{\"mode\":\"fanout\",\"error\":\"setup failed\",\"ready\":%d,\"failed\":%d,\"wanted\":%d}\n", ready_count,
               failed_count, nsubs + opt_inflight);
        return 1;
    }

    sending = 1;
    uint64_t t0 = now_ns();
    last_progress_ns = t0;
    uint64_t t_measure = t0 + (uint64_t)(opt_warmup * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(opt_duration * 1e9);
    double cpu0 = 0, scpu0 = 0, mcpu0 = 0, cpu1 = 0, scpu1 = 0, mcpu1 = 0;
    uint64_t tm0 = 0, tm1 = 0, creates0 = 0, creates1 = 0;
    int stalled = 0;
    publish_more();
    for (;;) {
        event_loop_once(20);
        uint64_t now = now_ns();
        if (!measuring && now >= t_measure && tm0 == 0) {
            measuring = 1;
            tm0 = now;
            cpu0 = cpu_seconds();
            scpu0 = server_cpu_seconds();
            mcpu0 = machine_busy_seconds();
            creates0 = seq_next;
        }
        if (measuring && now >= t_end) break;
        if (now - last_progress_ns > (uint64_t)(opt_stall * 1e9)) { stalled = 1; break; }
        if (seq_next >= opt_max_creates && !outstanding) break;
        publish_more();
    }
    if (measuring) {
        measuring = 0;
        tm1 = now_ns();
        cpu1 = cpu_seconds();
        scpu1 = server_cpu_seconds();
        mcpu1 = machine_busy_seconds();
        creates1 = seq_next;
    }
    sending = 0;
    uint64_t drain_end = now_ns() + (uint64_t)(opt_drain * 1e9);
    while (outstanding && now_ns() < drain_end) event_loop_once(20);
    uint64_t grace_end = now_ns() + 300000000ull; /* late, duplicate or unexpected events */
    while (now_ns() < grace_end) event_loop_once(20);

    uint64_t sent = seq_next - 1;
    uint64_t answered_ok = 0;
    for (uint64_t s = 1; s <= sent; s++) answered_ok += answered[s] == 1;
    uint64_t expected_ok = 0;
    for (uint64_t s = 1; s <= sent; s++)
        if (answered[s] == 1) expected_ok += expected_by_phase[s % nbodies];
    uint64_t lost = expected_ok > total_deliveries ? expected_ok - total_deliveries : 0;
    uint64_t duplicates = 0, reordered = 0, unparsed = 0;
    int open_subs = 0;
    for (int i = 0; i < nsubs; i++) {
        duplicates += subs[i].duplicates;
        reordered += subs[i].reordered;
        unparsed += subs[i].unparsed;
        open_subs += subs[i].state == S_READY;
    }
    double wall = tm0 && tm1 ? (tm1 - tm0) / 1e9 : 0;
    double server_cpu = wall && opt_server_pid ? (scpu1 - scpu0) / wall : -1;
    double own_cpu = wall ? (cpu1 - cpu0) / wall : 0;
    double other_cpu = wall ? (mcpu1 - mcpu0) / wall - own_cpu - (server_cpu > 0 ? server_cpu : 0) : 0;
    printf("{\"mode\":\"fanout\",\"subscribers\":%d,\"inflight\":%d,\"setup_s\":%.3f,\"window_s\":%.3f,"
           "\"creates_per_s\":%.1f,\"deliveries_per_s\":%.1f,\"window_creates_sent\":%llu,"
           "\"latency_us\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f,\"samples\":%llu},"
           "\"create_latency_us\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f,\"samples\":%llu},"
           "\"sent\":%llu,\"answered_2xx\":%llu,\"non_2xx\":%llu,\"first_error\":\"",
           nsubs, opt_inflight, setup_s, wall, wall ? window_creates / wall : 0, wall ? window_deliveries / wall : 0,
           (unsigned long long)(creates1 - creates0), percentile(hist, hist_n, 0.50), percentile(hist, hist_n, 0.99),
           lat_max_ns / 1000.0, (unsigned long long)hist_n, percentile(ack_hist, ack_n, 0.50),
           percentile(ack_hist, ack_n, 0.99), ack_max_ns / 1000.0, (unsigned long long)ack_n, (unsigned long long)sent,
           (unsigned long long)answered_ok, (unsigned long long)non_2xx);
    for (char *q = first_error; *q; q++) putchar(*q == '"' || *q == '\\' || (unsigned char)*q < 32 ? '\'' : *q);
    printf("\",\"expected_deliveries\":%llu,\"delivered\":%llu,\"lost\":%llu,\"unexpected\":%llu,\"duplicates\":%llu,"
           "\"reordered\":%llu,\"unparsed\":%llu,\"other_frames\":%llu,\"first_other_frame\":\"%s\",\"oversize\":%llu,"
           "\"closed_by_server\":%llu,\"open_subscribers\":%d,\"stalled\":%s,"
           "\"loadgen_cpu\":%.3f,\"server_cpu\":%.3f,\"other_cpu\":%.3f,\"signatures\":[",
           (unsigned long long)expected_ok, (unsigned long long)total_deliveries, (unsigned long long)lost,
           (unsigned long long)unexpected, (unsigned long long)duplicates, (unsigned long long)reordered,
           (unsigned long long)unparsed, (unsigned long long)other_frames, first_other, (unsigned long long)oversize,
           (unsigned long long)closes_seen, open_subs, stalled ? "true" : "false", own_cpu, server_cpu, other_cpu);
    for (int i = 0; i < nsigs; i++) printf("%s\"%s\"", i ? "," : "", sigs[i]);
    printf("],\"connections\":[");
    size_t bytes = sent / 8 + 1;
    static const char hex[] = "0123456789abcdef";
    char *line = malloc(bytes * 2 + 1);
    for (int i = 0; i < nsubs; i++) {
        conn_t *c = &subs[i];
        for (size_t b = 0; b < bytes; b++) {
            line[2 * b] = hex[c->seen[b] >> 4];
            line[2 * b + 1] = hex[c->seen[b] & 15];
        }
        line[2 * bytes] = 0;
        printf("%s{\"role\":%d,\"received\":%llu,\"duplicates\":%llu,\"reordered\":%llu,\"unparsed\":%llu,"
               "\"open\":%s,\"signatures\":%u,\"seen\":\"%s\"}",
               i ? "," : "", c->role, (unsigned long long)c->received, (unsigned long long)c->duplicates,
               (unsigned long long)c->reordered, (unsigned long long)c->unparsed, c->state == S_READY ? "true" : "false",
               c->sigmask, line);
    }
    printf("]}\n");
    return 0;
}
