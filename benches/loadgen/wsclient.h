/*
 * wsclient.h: the pieces the bench load generators share - clocks, CPU
 * counters, the latency histogram, client websocket framing (masked frames
 * out, a frame walker in), small blocking writes and a JSON skipper.
 *
 * Header-only (static functions), no state but the histogram a caller owns.
 * Used by resgen.c and dirgen.c; loadgen.c and siogen.c still carry their
 * own copies of the same code (they predate it) and may move onto it.
 */
#ifndef SATCHEL_WSCLIENT_H
#define SATCHEL_WSCLIENT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define WS_HIST_FINE 20000    /* 1 us buckets up to 20 ms */
#define WS_HIST_COARSE 100000 /* then 100 us buckets up to 10 s */

static inline uint64_t ws_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t ws_wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline double ws_cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* user + system seconds of process pid (0: none) */
static inline double ws_process_cpu_seconds(int pid) {
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

/* machine-wide busy seconds (/proc/stat) */
static inline double ws_machine_busy_seconds(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    unsigned long long v[10] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 4) return 0;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / sysconf(_SC_CLK_TCK);
}

typedef struct {
    uint32_t *buckets;
    uint64_t n, max_ns;
} ws_hist_t;

static inline void ws_hist_init(ws_hist_t *h) {
    h->buckets = calloc(WS_HIST_FINE + WS_HIST_COARSE, sizeof *h->buckets);
    h->n = h->max_ns = 0;
}

static inline void ws_hist_record(ws_hist_t *h, uint64_t ns) {
    uint64_t us = ns / 1000;
    size_t i;
    if (us < WS_HIST_FINE) i = us;
    else {
        uint64_t c = (us - WS_HIST_FINE) / 100;
        if (c >= WS_HIST_COARSE) c = WS_HIST_COARSE - 1;
        i = WS_HIST_FINE + c;
    }
    h->buckets[i]++;
    h->n++;
    if (ns > h->max_ns) h->max_ns = ns;
}

/* microseconds */
static inline double ws_hist_percentile(const ws_hist_t *h, double p) {
    if (!h->n) return 0;
    uint64_t target = (uint64_t)(p * h->n);
    if (target >= h->n) target = h->n - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < WS_HIST_FINE + WS_HIST_COARSE; i++) {
        seen += h->buckets[i];
        if (seen > target) {
            if (i < WS_HIST_FINE) return (double)i + 0.5;
            return WS_HIST_FINE + (double)(i - WS_HIST_FINE) * 100 + 50;
        }
    }
    return 0;
}

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

static inline int ws_send_text(int fd, const char *text) {
    size_t len = strlen(text);
    uint8_t *frame = malloc(len + 16);
    size_t n = ws_client_frame(frame, 1, (const uint8_t *)text, len);
    int r = ws_write_all_small(fd, frame, n);
    free(frame);
    return r;
}

/*
 * Walk the whole server frames in buf[0..len). For each, on_frame(ctx,
 * opcode, payload, n). Frames over frame_max are skipped (*skip holds what
 * is left of one across calls; *oversize counts them). Returns how many
 * bytes were consumed: the caller keeps the rest for the next read. Stops
 * early when on_frame returns nonzero.
 */
typedef int (*ws_frame_fn)(void *ctx, int opcode, const uint8_t *payload, size_t n);

static inline size_t ws_walk_frames(const uint8_t *buf, size_t len, uint64_t frame_max, uint64_t *skip,
                                    uint64_t *oversize, ws_frame_fn on_frame, void *ctx) {
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
        if (p[1] & 0x80) hdr += 4;
        if (plen > frame_max) {
            (*oversize)++;
            if (avail - hdr >= plen) { pos += hdr + plen; continue; }
            *skip = plen - (avail - hdr);
            return len;
        }
        if (avail < hdr + plen) break;
        pos += hdr + plen;
        if (on_frame(ctx, p[0] & 0x0f, p + hdr, plen)) break;
    }
    return pos;
}

/* the first occurrence of needle in p[0..n) */
static inline const uint8_t *ws_find(const uint8_t *p, size_t n, const char *needle) {
    return memmem(p, n, needle, strlen(needle));
}

/* the unsigned decimal at p (up to end); -1 if none */
static inline int64_t ws_parse_uint(const uint8_t *p, const uint8_t *end) {
    int64_t v = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 19) { v = v * 10 + (*p++ - '0'); digits++; }
    return digits ? v : -1;
}

static inline uint64_t ws_fnv1a(const void *data, size_t n, uint64_t h) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 0x100000001b3ull; }
    return h;
}

static inline char *ws_read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc(size + 1);
    if (fread(data, 1, size, f) != (size_t)size) { fclose(f); free(data); return NULL; }
    data[size] = 0;
    fclose(f);
    return data;
}

#endif
