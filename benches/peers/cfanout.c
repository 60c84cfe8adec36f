/*
 * cfanout: the load generator's ceiling - not a peer Satchel is compared to.
 *
 * A minimal C epoll websocket broadcast server that does what STACK.md calls
 * the limit on this machine: encode each message once, and write everything
 * that arrived for a connection during one loop iteration with ONE write().
 * It speaks the same subset of Backpack as the other peers (greeting, join,
 * broadcast to everyone or to the room the message names). The fan-out bench
 * runs it to show how many deliveries per second the load generator can
 * absorb: if the ceiling is far above every measured server, the load
 * generator is not what limits them.
 *
 * Usage: cfanout PORT   (0 picks one; prints "listening on N"). Loopback only.
 * Build: cc -O2 -o cfanout cfanout.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 65536
#define OUT_LIMIT (4u << 20)

/* --- SHA-1 (RFC 3174), for Sec-WebSocket-Accept --------------------------- */
static uint32_t rol(uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }
static void sha1(const uint8_t *data, size_t len, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    uint8_t *msg = calloc(total, 1);
    memcpy(msg, data, len);
    msg[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) msg[total - 1 - i] = bits >> (8 * i);
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)msg[off + 4 * i] << 24 | (uint32_t)msg[off + 4 * i + 1] << 16 |
                   (uint32_t)msg[off + 4 * i + 2] << 8 | msg[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
            else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
            else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
            else { f = b ^ c ^ d; k = 0xCA62C1D6; }
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d; d = c; c = rol(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    free(msg);
    for (int i = 0; i < 5; i++) for (int j = 0; j < 4; j++) out[4 * i + j] = h[i] >> (24 - 8 * j);
}

static void base64(const uint8_t *in, size_t len, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = in[i] << 16 | (i + 1 < len ? in[i + 1] << 8 : 0) | (i + 2 < len ? in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < len ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? t[v & 63] : '=';
    }
    out[o] = 0;
}

/* --- connections ------------------------------------------------------------ */
typedef struct {
    int fd, open, in_room, dirty, index;
    uint8_t *in; size_t in_len, in_cap;
    uint8_t *out; size_t out_len, out_cap;
} conn_t;

static conn_t *conns[MAX_CONNS];
static int nconns;
static conn_t *dirty[MAX_CONNS];
static int ndirty;
static int epfd;

static void append(conn_t *c, const uint8_t *data, size_t len) {
    if (c->out_len + len > OUT_LIMIT) return; /* a slow consumer: drop (never happens in the bench) */
    if (c->out_len + len > c->out_cap) {
        c->out_cap = (c->out_len + len) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    if (!c->dirty) { c->dirty = 1; dirty[ndirty++] = c; }
}

static void drop(conn_t *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    conns[c->index] = conns[--nconns];
    conns[c->index]->index = c->index;
    c->open = -1; /* freed after the iteration (it may be in dirty[]) */
}

static size_t frame(uint8_t *out, const uint8_t *payload, size_t len) {
    size_t h = 0;
    out[h++] = 0x81;
    if (len < 126) out[h++] = len;
    else if (len < 65536) { out[h++] = 126; out[h++] = len >> 8; out[h++] = len; }
    else { out[h++] = 127; for (int i = 7; i >= 0; i--) out[h++] = (uint64_t)len >> (8 * i); }
    memcpy(out + h, payload, len);
    return h + len;
}

static void send_text(conn_t *c, const char *text) {
    uint8_t buf[512];
    append(c, buf, frame(buf, (const uint8_t *)text, strlen(text)));
}

static void on_message(conn_t *c, uint8_t *payload, size_t len) {
    static uint8_t encoded[1 << 20];
    if (memmem(payload, len, "\"action\":\"broadcast\"", 20)) {
        size_t n = frame(encoded, payload, len); /* encoded once */
        int room = memmem(payload, len, "\"channelType\"", 13) != NULL;
        for (int i = 0; i < nconns; i++)
            if (conns[i]->open == 1 && (!room || conns[i]->in_room)) append(conns[i], encoded, n);
    } else if (memmem(payload, len, "\"action\":\"join\"", 15)) {
        c->in_room = 1;
        send_text(c, "{\"action\":\"joined\"}");
    }
}

static void on_handshake(conn_t *c) {
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) return;
    char *key = strcasestr((char *)c->in, "sec-websocket-key:");
    if (!key) { drop(c); return; }
    key += 18;
    while (*key == ' ') key++;
    char buf[128];
    size_t k = strcspn(key, "\r\n");
    if (k > 60) { drop(c); return; }
    memcpy(buf, key, k);
    memcpy(buf + k, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    uint8_t digest[20];
    sha1((uint8_t *)buf, k + 36, digest);
    char accept[32], head[256];
    base64(digest, 20, accept);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
    append(c, (uint8_t *)head, n);
    send_text(c, "{\"action\":\"connection\",\"response\":\"Websocket connection established\"}");
    size_t used = (uint8_t *)end + 4 - c->in;
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    c->open = 1;
}

static void on_frames(conn_t *c) {
    size_t pos = 0;
    while (c->in_len - pos >= 6) {
        uint8_t *p = c->in + pos;
        uint64_t len = p[1] & 0x7f;
        size_t h = 2;
        if (len == 126) { if (c->in_len - pos < 8) break; len = p[2] << 8 | p[3]; h = 4; }
        else if (len == 127) { if (c->in_len - pos < 14) break; len = 0; for (int i = 0; i < 8; i++) len = len << 8 | p[2 + i]; h = 10; }
        uint8_t *mask = p + h;
        h += 4;
        if (c->in_len - pos < h + len) break;
        uint8_t *payload = p + h;
        for (uint64_t i = 0; i < len; i++) payload[i] ^= mask[i & 3];
        int opcode = p[0] & 0x0f;
        if (opcode == 8) { drop(c); return; }
        if (opcode == 1) on_message(c, payload, len);
        pos += h + len;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
}

static void on_readable(conn_t *c) {
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            c->in_cap = c->in_cap * 2 + 65536;
            c->in = realloc(c->in, c->in_cap);
        }
        ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1);
        if (n <= 0) {
            if (n < 0 && errno == EAGAIN) return;
            drop(c);
            return;
        }
        c->in_len += n;
        c->in[c->in_len] = 0;
        if (!c->open) on_handshake(c);
        if (c->open == 1) on_frames(c);
        if (c->open < 0) return;
    }
}

static void flush_dirty(void) {
    for (int i = 0; i < ndirty; i++) {
        conn_t *c = dirty[i];
        c->dirty = 0;
        if (c->open < 0) continue;
        ssize_t n = write(c->fd, c->out, c->out_len); /* one write per connection per iteration */
        if (n > 0) {
            memmove(c->out, c->out + n, c->out_len - n);
            c->out_len -= n;
        } else if (n < 0 && errno != EAGAIN) {
            drop(c);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | (c->out_len ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
    ndirty = 0;
}

int main(int argc, char **argv) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0) { perror("listen"); return 1; }
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    printf("listening on %d\n", ntohs(sa.sin_port));
    fflush(stdout);
    epfd = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event events[1024];
    conn_t *graveyard[1024];
    for (;;) {
        int n = epoll_wait(epfd, events, 1024, -1);
        int dead = 0;
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (nconns >= MAX_CONNS) { close(fd); continue; }
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    nc->index = nconns;
                    conns[nconns++] = nc;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (c->open < 0) continue;
            if (events[i].events & EPOLLOUT && c->out_len && !c->dirty) { c->dirty = 1; dirty[ndirty++] = c; }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
            if (c->open < 0 && dead < 1024) graveyard[dead++] = c;
        }
        flush_dirty();
        for (int i = 0; i < dead; i++) { free(graveyard[i]->in); free(graveyard[i]->out); free(graveyard[i]); }
    }
}
