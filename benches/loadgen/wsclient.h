/*
 * wsclient.h: the websocket client the bench load generators share -
 * masked client frames out, a frame walker and a per-connection reader in
 * (whole frames, or only each frame's first bytes), the upgrade request
 * and its answer, pongs, small blocking writes.
 *
 * Header-only (static functions), no state: a caller owns its
 * ws_reading_t (the read buffer) and each connection's ws_reader_t and
 * ws_upgrade_t - or a ws_net_t, one epoll set of such connections, whose
 * callbacks are the program's protocol. Used by loadgen.c, siogen.c,
 * dirgen.c and resgen.c; the rest of what they share (clocks, CPU,
 * histograms, JSON output, TCP/epoll and HTTP helpers) is in
 * benchcommon.h, included here.
 */
#ifndef SATCHEL_WSCLIENT_H
#define SATCHEL_WSCLIENT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "benchcommon.h"

#include <poll.h>

/* handshakes, control frames and requests: small, the kernel takes them */
static inline int ws_write_all_small(int fd, const void *data, size_t len) {
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

/* a masked client frame of payload into out (which holds len + 14 bytes) */
static inline size_t ws_client_frame(uint8_t *out, int opcode, const uint8_t *payload, size_t len) {
    static const uint8_t mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};
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

/* a text frame of text[0..len): small ones on the stack, the rest in a malloc */
static inline int ws_send_text_n(int fd, const char *text, size_t len) {
    uint8_t small[8192];
    uint8_t *frame = len + 16 <= sizeof small ? small : malloc(len + 16);
    size_t n = ws_client_frame(frame, 1, (const uint8_t *)text, len);
    int r = ws_write_all_small(fd, frame, n);
    if (frame != small) free(frame);
    return r;
}

static inline int ws_send_text(int fd, const char *text) { return ws_send_text_n(fd, text, strlen(text)); }

/*
 * Walk the server frames in buf[0..len) and call on_frame(ctx, opcode,
 * payload, n, plen) for each. Two ways:
 * - prefix_max 0: whole frames only (payload has all plen = n bytes);
 *   frames over frame_max are skipped and counted in *oversize; an
 *   incomplete frame is left for the next read.
 * - prefix_max > 0: a frame is handed over as soon as its first
 *   min(plen, prefix_max) bytes are here (n of them), the rest of its
 *   payload is skipped - what loadgen and siogen need, who only look at a
 *   message's first bytes and must not copy big frames.
 * *skip holds what is left to skip of a frame across calls. Returns how
 * many bytes were consumed: the caller keeps the rest for the next read.
 * Stops early when on_frame returns nonzero (the connection is gone).
 */
typedef int (*ws_frame_fn)(void *ctx, int opcode, const uint8_t *payload, size_t n, uint64_t plen);

static inline size_t ws_walk_frames(const uint8_t *buf, size_t len, size_t prefix_max, uint64_t frame_max,
                                    uint64_t *skip, uint64_t *oversize, ws_frame_fn on_frame, void *ctx) {
    size_t pos = 0;
    if (*skip) {
        uint64_t take = *skip < len ? *skip : len;
        pos += take;
        *skip -= take;
    }
    while (pos < len) {
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
        if (prefix_max) {
            size_t want = plen < prefix_max ? plen : prefix_max;
            if (avail < hdr + want) break;
            int stop = on_frame(ctx, p[0] & 0x0f, p + hdr, want, plen);
            if (avail - hdr >= plen) pos += hdr + plen;
            else {
                *skip = plen - (avail - hdr);
                return len;
            }
            if (stop) break;
            continue;
        }
        if (plen > frame_max) {
            (*oversize)++;
            if (avail - hdr >= plen) { pos += hdr + plen; continue; }
            *skip = plen - (avail - hdr);
            return len;
        }
        if (avail < hdr + plen) break;
        pos += hdr + plen;
        if (on_frame(ctx, p[0] & 0x0f, p + hdr, plen, plen)) break;
    }
    return pos;
}

/*
 * A connection's read side: what is left of a frame between reads. One
 * read buffer serves every connection; the carry is copied in front of
 * each read, so ws_reading_init() leaves headroom for the largest carry
 * (a frame of frame_max, or a header and a prefix) in front of it.
 */
typedef struct {
    uint8_t *carry;
    size_t carry_len, carry_cap;
    uint64_t skip;
} ws_reader_t;

typedef struct {
    size_t prefix_max;    /* see ws_walk_frames */
    uint64_t frame_max;
    size_t read_size;     /* bytes per read() */
    uint64_t oversize;    /* frames skipped, over frame_max */
    uint8_t *buf;
    size_t headroom;
    uint64_t now;         /* when the last read() returned */
} ws_reading_t;

static inline void ws_reading_init(ws_reading_t *r, size_t prefix_max, uint64_t frame_max, size_t read_size) {
    r->prefix_max = prefix_max;
    r->frame_max = frame_max;
    r->read_size = read_size;
    r->oversize = 0;
    r->headroom = (prefix_max ? prefix_max : frame_max) + 16;
    r->buf = malloc(r->headroom + read_size);
}

/* walk buf (what follows a carry, or the bytes after the upgrade answer); keep the rest in c */
static inline void ws_reader_feed(ws_reading_t *r, ws_reader_t *c, const uint8_t *buf, size_t len, ws_frame_fn on_frame,
                                  void *ctx) {
    size_t used = ws_walk_frames(buf, len, r->prefix_max, r->frame_max, &c->skip, &r->oversize, on_frame, ctx);
    size_t rest = len - used;
    if (rest > c->carry_cap) {
        c->carry_cap = rest < 4096 ? 4096 : rest;
        c->carry = realloc(c->carry, c->carry_cap);
        if (!c->carry) { fprintf(stderr, "websocket reader: out of memory\n"); exit(2); }
    }
    if (rest) memmove(c->carry, buf + used, rest);
    c->carry_len = rest;
}

/*
 * One read() of fd, walked with the carry in front. r->now is the time of
 * that read (one clock read per read(): the latency of every frame in it).
 * Returns the bytes read, 0 when there is nothing to read (EAGAIN), -1 when
 * the connection is closed or failed. The caller reads again while it gets
 * a full read_size and the connection is still open.
 */
static inline ssize_t ws_reader_read(ws_reading_t *r, ws_reader_t *c, int fd, ws_frame_fn on_frame, void *ctx) {
    uint8_t *start = r->buf + r->headroom - c->carry_len;
    if (c->carry_len) memcpy(start, c->carry, c->carry_len);
    ssize_t n = read(fd, r->buf + r->headroom, r->read_size);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (n <= 0) return -1;
    r->now = bench_now_ns();
    ws_reader_feed(r, c, start, c->carry_len + n, on_frame, ctx);
    return n;
}

/* the upgrade request; extra: header lines, each ending in \r\n (or "") */
static inline int ws_send_upgrade(int fd, const char *path, int port, const char *extra) {
    char req[16384];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     path, port, extra);
    if (n < 0 || (size_t)n >= sizeof req) return -1;
    return ws_write_all_small(fd, req, n);
}

/* the upgrade answer, read until its blank line (buf is NULL once open) */
typedef struct {
    uint8_t *buf;
    size_t len;
} ws_upgrade_t;

#define WS_UPGRADE_MAX 16384
enum { WS_UPGRADE_MORE = 0, WS_UPGRADE_OPEN = 1, WS_UPGRADE_FAILED = -1 };

/*
 * Read what the server answered to the upgrade. WS_UPGRADE_OPEN: a 101,
 * *body_at is where the first frames begin in u->buf (u->len - *body_at
 * bytes of them); the caller walks them and calls ws_upgrade_done().
 * WS_UPGRADE_FAILED: why says why.
 */
static inline int ws_upgrade_read(int fd, ws_upgrade_t *u, size_t *body_at, char *why, size_t why_cap) {
    if (!u->buf) { u->buf = malloc(WS_UPGRADE_MAX); u->len = 0; }
    ssize_t n = read(fd, u->buf + u->len, WS_UPGRADE_MAX - u->len - 1);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN) return WS_UPGRADE_MORE;
        snprintf(why, why_cap, "closed during the handshake");
        return WS_UPGRADE_FAILED;
    }
    u->len += n;
    u->buf[u->len] = 0;
    char *end = strstr((char *)u->buf, "\r\n\r\n");
    if (!end) {
        if (u->len < WS_UPGRADE_MAX - 1) return WS_UPGRADE_MORE;
        snprintf(why, why_cap, "handshake response too long");
        return WS_UPGRADE_FAILED;
    }
    if (strncmp((char *)u->buf, "HTTP/1.1 101", 12) != 0) {
        snprintf(why, why_cap, "refused: %.160s", (char *)u->buf);
        return WS_UPGRADE_FAILED;
    }
    *body_at = (uint8_t *)end + 4 - u->buf;
    return WS_UPGRADE_OPEN;
}

static inline void ws_upgrade_done(ws_upgrade_t *u) {
    free(u->buf);
    u->buf = NULL;
    u->len = 0;
}

/* answer a ping (its payload is here whole: control frames are at most 125 bytes) */
static inline void ws_pong(int fd, const uint8_t *payload, size_t n, uint64_t plen) {
    if (plen > n || n > 125) return;
    uint8_t frame[256];
    size_t k = ws_client_frame(frame, 0xA, payload, n);
    ws_write_all_small(fd, frame, k);
}

/* --- a set of connections on one epoll loop ---------------------------------------- */

/*
 * Every generator runs one epoll set of connections: websockets (upgrade,
 * then frames through the shared reader) and, for the REST writers, plain
 * keep-alive HTTP connections. A program's connection struct begins with a
 * ws_conn_t (so that a ws_conn_t * is also a pointer to it); the program
 * gives its protocol as the callbacks of its ws_net_t. Its own states sit
 * between WS_HANDSHAKE and WS_READY.
 */
enum { WS_CONNECTING = 0, WS_HANDSHAKE = 1, WS_OWN_STATES = 2, WS_READY = 100, WS_CLOSED = 101 };

typedef struct {
    int fd, state;
    int port;             /* 0: the net's */
    int is_http;          /* a REST connection: ready once connected, read by on_http */
    const char *path;     /* the upgrade's path and extra header lines (each ending in \r\n, or "") */
    const char *extra;
    ws_upgrade_t hs;
    ws_reader_t rd;
} ws_conn_t;

typedef struct {
    int epfd, port;
    ws_reading_t reading;
    int ready, failed;        /* connections ready, and failed before that */
    uint64_t closed;          /* ready connections closed since (by the server, mostly) */
    int report_closes;        /* print the first three of those too */
    /* the program's protocol */
    void (*on_open)(ws_conn_t *c);     /* the 101 is in: set c->state, send the first frames */
    ws_frame_fn on_frame;              /* ctx: the ws_conn_t */
    void (*on_writable)(ws_conn_t *c); /* EPOLLOUT on an open connection (NULL: none) */
    void (*on_http)(ws_conn_t *c);     /* a REST connection is readable (NULL: none) */
} ws_net_t;

static inline void ws_net_init(ws_net_t *net, int port, size_t prefix_max, uint64_t frame_max, size_t read_size) {
    net->epfd = epoll_create1(0);
    if (net->epfd < 0) bench_die("epoll_create1");
    net->port = port;
    ws_reading_init(&net->reading, prefix_max, frame_max, read_size);
}

static inline void ws_net_connect(ws_net_t *net, ws_conn_t *c) {
    c->fd = bench_connect(net->epfd, c->port ? c->port : net->port, c);
    c->state = WS_CONNECTING;
}

static inline void ws_net_ready(ws_net_t *net, ws_conn_t *c) {
    c->state = WS_READY;
    net->ready++;
}

static inline void ws_net_fail(ws_net_t *net, ws_conn_t *c, const char *why) {
    if (c->state == WS_CLOSED) return;
    if (c->state != WS_READY) {
        net->failed++;
        if (net->failed <= 3) fprintf(stderr, BENCH_NAME ": a connection failed during setup: %s\n", why);
    } else {
        net->closed++;
        if (net->report_closes && net->closed <= 3) fprintf(stderr, BENCH_NAME ": a connection closed: %s\n", why);
    }
    c->state = WS_CLOSED;
    bench_ep_close(net->epfd, c->fd);
}

static inline void ws_net_upgrade(ws_net_t *net, ws_conn_t *c) {
    if (ws_send_upgrade(c->fd, c->path, c->port ? c->port : net->port, c->extra ? c->extra : "") < 0)
        bench_die("handshake write");
    c->state = WS_HANDSHAKE;
    bench_ep_mod(net->epfd, c->fd, c, EPOLLIN);
}

static inline void ws_net_handshake(ws_net_t *net, ws_conn_t *c) {
    size_t body_at;
    char why[200];
    int r = ws_upgrade_read(c->fd, &c->hs, &body_at, why, sizeof why);
    if (r == WS_UPGRADE_MORE) return;
    if (r == WS_UPGRADE_FAILED) {
        ws_net_fail(net, c, why);
        ws_upgrade_done(&c->hs);
        return;
    }
    net->on_open(c);
    net->reading.now = bench_now_ns();
    if (c->state != WS_CLOSED)
        ws_reader_feed(&net->reading, &c->rd, c->hs.buf + body_at, c->hs.len - body_at, net->on_frame, c);
    ws_upgrade_done(&c->hs);
}

static inline void ws_net_readable(ws_net_t *net, ws_conn_t *c) {
    for (;;) {
        ssize_t n = ws_reader_read(&net->reading, &c->rd, c->fd, net->on_frame, c);
        if (n < 0) ws_net_fail(net, c, "connection closed");
        if (n < (ssize_t)net->reading.read_size || c->state == WS_CLOSED) return;
    }
}

/* wait up to timeout_ms for events and serve them */
static inline void ws_net_loop_once(ws_net_t *net, int timeout_ms) {
    struct epoll_event events[1024];
    int n = bench_wait(net->epfd, events, 1024, timeout_ms);
    for (int i = 0; i < n; i++) {
        ws_conn_t *c = events[i].data.ptr;
        uint32_t ev = events[i].events;
        if (c->state == WS_CLOSED) continue;
        if (c->state == WS_CONNECTING) {
            if (ev & (EPOLLERR | EPOLLHUP)) { ws_net_fail(net, c, "connect failed"); continue; }
            if (ev & EPOLLOUT) {
                if (c->is_http) { ws_net_ready(net, c); bench_ep_mod(net->epfd, c->fd, c, EPOLLIN); }
                else ws_net_upgrade(net, c);
            }
            continue;
        }
        if ((ev & EPOLLOUT) && net->on_writable) net->on_writable(c);
        if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            if (c->is_http) net->on_http(c);
            else if (c->state == WS_HANDSHAKE) ws_net_handshake(net, c);
            else ws_net_readable(net, c);
        }
    }
}

static inline ws_conn_t *ws_conn_at(void *array, size_t stride, int i) { return (ws_conn_t *)((char *)array + stride * i); }

/*
 * Connect first[0..nfirst) at once (the REST writers' few connections),
 * then rest[0..nrest) with at most `limit` of them in setup at a time,
 * until every one is ready or failed, or timeout_s pass. Both arrays are
 * of the program's connection struct, `stride` bytes each.
 */
static inline void ws_net_setup(ws_net_t *net, void *first, int nfirst, void *rest, int nrest, size_t stride, int limit,
                                double timeout_s) {
    int started = 0;
    uint64_t deadline = bench_now_ns() + (uint64_t)(timeout_s * 1e9);
    for (int i = 0; i < nfirst; i++) ws_net_connect(net, ws_conn_at(first, stride, i));
    while (net->ready + net->failed < nfirst + nrest) {
        int pending = 0;
        for (int i = 0; i < started; i++) {
            int state = ws_conn_at(rest, stride, i)->state;
            pending += state != WS_READY && state != WS_CLOSED;
        }
        while (started < nrest && pending < limit) {
            ws_net_connect(net, ws_conn_at(rest, stride, started++));
            pending++;
        }
        ws_net_loop_once(net, 10);
        if (bench_now_ns() > deadline) {
            fprintf(stderr, BENCH_NAME ": setup timed out: %d ready, %d failed of %d\n", net->ready, net->failed,
                    nfirst + nrest);
            break;
        }
    }
}

#endif
