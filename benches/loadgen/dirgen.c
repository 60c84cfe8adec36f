/*
 * dirgen: a lean load generator for the Directus subscription fan-out bench
 * (benches/README.md, "Permissions"): Directus core realtime subscribers on
 * `/websocket`, each signed in as a user of some role, and one REST client
 * that creates items as fast as the closed loop allows.
 *
 * One process, one thread, one epoll loop, loopback only; a sibling of
 * loadgen.c, siogen.c and resgen.c; websocket framing and reading come
 * from wsclient.h, clocks, CPU, the histogram, epoll and HTTP plumbing from
 * benchcommon.h, shared with them.
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
#define BENCH_NAME "dirgen"
#include "wsclient.h" /* websocket framing and reader; benchcommon.h: clocks, CPU, histogram, epoll, HTTP */

#include <ctype.h>

#define MAX_EVENTS 1024
#define READ_SIZE (256 * 1024)
#define FRAME_MAX (256 * 1024) /* larger frames are skipped (and counted) */
#define MAX_ROLES 16
#define MAX_BODIES 256
#define MAX_SIGS 32
#define SIG_MAX 1024
#define HTTP_IN 65536

enum { S_AUTH = WS_OWN_STATES, S_SUBSCRIBING };

typedef struct {
    ws_conn_t ws; /* ws.is_http: one of the REST publisher's connections */
    int role;
    const char *token;
    /* websocket */
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
static ws_net_t net;

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
static uint64_t non_2xx = 0, other_frames = 0, unexpected = 0;
static uint64_t last_progress_ns = 0;
static bench_hist_t hist, ack_hist;
static char first_error[512] = "";
static char first_other[256] = "";

static char sigs[MAX_SIGS][SIG_MAX];
static int nsigs = 0;


static void send_text(conn_t *c, const char *text) {
    size_t len = strlen(text);
    if (len > 8192 - 16) { fprintf(stderr, "dirgen: frame too long\n"); exit(2); }
    if (ws_send_text_n(c->ws.fd, text, len) < 0) bench_die("write");
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
    bench_keep_first(first_other, sizeof first_other, p, n);
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
        bench_hist_record(&hist, now - sent_ns[seq]);
    }
    delivered[seq]++;
    maybe_complete(seq, now);
}

static void on_text(conn_t *c, const uint8_t *p, size_t n, uint64_t now) {
    if (c->ws.state == WS_READY && bench_is_prefix(p, n, EVENT_PREFIX)) { on_event(c, p, n, now); return; }
    if (bench_is_prefix(p, n, "{\"type\":\"ping\"")) { send_text(c, "{\"type\":\"pong\"}"); return; }
    if (c->ws.state == S_AUTH) {
        if (bench_is_prefix(p, n, "{\"type\":\"auth\",\"status\":\"ok\"")) {
            send_text(c, opt_subscribe);
            c->ws.state = S_SUBSCRIBING;
        } else {
            char why[200];
            snprintf(why, sizeof why, "auth refused: %.*s", (int)(n < 150 ? n : 150), (const char *)p);
            ws_net_fail(&net, &c->ws, why);
        }
        return;
    }
    if (c->ws.state == S_SUBSCRIBING) {
        if (bench_is_prefix(p, n, "{\"type\":\"subscription\",\"event\":\"init\""))
            ws_net_ready(&net, &c->ws);
        else {
            char why[200];
            snprintf(why, sizeof why, "subscribe refused: %.*s", (int)(n < 150 ? n : 150), (const char *)p);
            ws_net_fail(&net, &c->ws, why);
        }
        return;
    }
    note_other(p, n);
}

static int on_frame(void *ctx, int opcode, const uint8_t *p, size_t n, uint64_t plen) {
    conn_t *c = ctx;
    if (opcode == 1) on_text(c, p, n, net.reading.now);
    else if (opcode == 8) ws_net_fail(&net, &c->ws, "server closed the websocket");
    else if (opcode == 9) ws_pong(c->ws.fd, p, n, plen);
    return c->ws.state == WS_CLOSED;
}

/* the upgrade is done: the core handshake's auth frame first */
static void on_open(ws_conn_t *wc) {
    conn_t *c = (conn_t *)wc;
    char auth[4096];
    snprintf(auth, sizeof auth, "{\"type\":\"auth\",\"access_token\":\"%s\"}", c->token);
    send_text(c, auth);
    c->ws.state = S_AUTH;
}

/* -- the HTTP publisher ------------------------------------------------------------ */

static void http_send(conn_t *h, uint64_t now) {
    uint64_t seq = seq_next++;
    int b = seq % nbodies;
    bench_stamp_seq(bodies[b] + body_seq_off[b], seq);
    char req[8192];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     opt_post_path, opt_host, opt_port, opt_post_auth, body_len[b], bodies[b]);
    h->seq = seq;
    sent_ns[seq] = now;
    outstanding++;
    expected_total += expected_by_phase[b];
    if (ws_write_all_small(h->ws.fd, req, n) < 0) bench_die("request write");
}

static void publish_more(void) {
    if (!sending) return;
    uint64_t now = bench_now_ns();
    for (int i = 0; i < opt_inflight && outstanding < (uint64_t)opt_inflight; i++) {
        conn_t *h = &https[i];
        if (h->ws.state == WS_READY && h->seq == 0 && seq_next < opt_max_creates) http_send(h, now);
    }
}

/* one answer of REST connection ctx */
static void on_answer(void *ctx, int status, const char *body, size_t clen) {
    conn_t *h = ctx;
    uint64_t now = bench_now_ns();
    uint64_t seq = h->seq;
    if (!seq) { fprintf(stderr, "dirgen: an answer nobody asked for\n"); exit(2); }
    h->seq = 0;
    if (status >= 200 && status < 300) answered[seq] = 1;
    else {
        answered[seq] = 2;
        non_2xx++;
        bench_keep_error(first_error, sizeof first_error, status, body, clen);
        /* nobody will receive it: do not wait for deliveries */
        delivered[seq] = expected_by_phase[seq % nbodies];
    }
    if (measuring) bench_hist_record(&ack_hist, now - sent_ns[seq]);
    maybe_complete(seq, now);
}

static void http_readable(ws_conn_t *wc) {
    conn_t *h = (conn_t *)wc;
    if (bench_http_read(h->ws.fd, h->in, &h->in_len, HTTP_IN, on_answer, h) < 0)
        ws_net_fail(&net, wc, "the REST connection closed");
}

/* -- the loop ---------------------------------------------------------------------- */

static void loop_once(int timeout_ms) { ws_net_loop_once(&net, timeout_ms); }

static uint64_t creates0 = 0, creates1 = 0; /* seq_next at the window's ends */

static void count_creates(int open) { *(open ? &creates0 : &creates1) = seq_next; }

static int creates_used_up(void) { return seq_next >= opt_max_creates && !outstanding; }

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
    bench_loopback_only(opt_host);
    if (opt_duration > 120 || opt_warmup > 60 || opt_drain > 60) { fprintf(stderr, "dirgen: bounded runs only\n"); return 2; }

    bench_raise_nofile();

    /* bodies: one a line */
    char *text = bench_read_file(opt_bodies_file);
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
    char *ctext = bench_read_file(opt_conns_file);
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
        c->ws.path = opt_path;
        c->last_seq = -1;
        role_conns[c->role]++;
    }
    if (nsubs < 1 || nsubs > 60000) usage();
    for (int b = 0; b < nbodies; b++)
        for (int r = 0; r < nroles; r++)
            if (masks[r][b] == '1') expected_by_phase[b] += role_conns[r];
    https = calloc(opt_inflight, sizeof *https);
    for (int i = 0; i < opt_inflight; i++) https[i].ws.is_http = 1;

    sent_ns = calloc(opt_max_creates + 1, sizeof *sent_ns);
    delivered = calloc(opt_max_creates + 1, sizeof *delivered);
    answered = calloc(opt_max_creates + 1, 1);
    ws_net_init(&net, opt_port, 0, FRAME_MAX, READ_SIZE);
    net.report_closes = 1;
    net.on_open = on_open;
    net.on_frame = on_frame;
    net.on_http = http_readable;
    bench_hist_init(&hist);
    bench_hist_init(&ack_hist);

    uint64_t t_setup = bench_now_ns();
    ws_net_setup(&net, https, opt_inflight, subs, nsubs, sizeof *subs, opt_concurrent_handshakes, opt_setup_timeout);
    double setup_s = (bench_now_ns() - t_setup) / 1e9;
    if (net.ready < nsubs + opt_inflight) {
        printf("{\"mode\":\"fanout\",\"error\":\"setup failed\",\"ready\":%d,\"failed\":%d,\"wanted\":%d}\n", net.ready,
               net.failed, nsubs + opt_inflight);
        return 1;
    }

    sending = 1;
    bench_run_t run = {.warmup_s = opt_warmup, .duration_s = opt_duration, .stall_s = opt_stall,
                       .server_pid = opt_server_pid, .poll_ms = 20, .loop_once = loop_once, .more = publish_more,
                       .done = creates_used_up, .edge = count_creates, .last_progress_ns = &last_progress_ns,
                       .measuring = &measuring};
    bench_window_t w;
    int stalled = bench_run(&run, &w);
    sending = 0;
    bench_drain(loop_once, &outstanding, opt_drain, 0.3); /* the grace: late, duplicate or unexpected events */

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
        open_subs += subs[i].ws.state == WS_READY;
    }
    double wall = bench_window_s(&w);
    printf("{\"mode\":\"fanout\",\"subscribers\":%d,\"inflight\":%d,\"setup_s\":%.3f,\"window_s\":%.3f,"
           "\"creates_per_s\":%.1f,\"deliveries_per_s\":%.1f,\"window_creates_sent\":%llu,",
           nsubs, opt_inflight, setup_s, wall, wall ? window_creates / wall : 0, wall ? window_deliveries / wall : 0,
           (unsigned long long)(creates1 - creates0));
    bench_print_latency("latency_us", &hist);
    putchar(',');
    bench_print_latency("create_latency_us", &ack_hist);
    printf(",\"sent\":%llu,\"answered_2xx\":%llu,\"non_2xx\":%llu,\"first_error\":", (unsigned long long)sent,
           (unsigned long long)answered_ok, (unsigned long long)non_2xx);
    bench_print_json_string(first_error);
    printf(",\"expected_deliveries\":%llu,\"delivered\":%llu,\"lost\":%llu,\"unexpected\":%llu,\"duplicates\":%llu,"
           "\"reordered\":%llu,\"unparsed\":%llu,\"other_frames\":%llu,\"first_other_frame\":\"%s\",\"oversize\":%llu,"
           "\"closed_by_server\":%llu,\"open_subscribers\":%d,\"stalled\":%s,"
           "\"loadgen_cpu\":%.3f,\"server_cpu\":%.3f,\"other_cpu\":%.3f,\"signatures\":[",
           (unsigned long long)expected_ok, (unsigned long long)total_deliveries, (unsigned long long)lost,
           (unsigned long long)unexpected, (unsigned long long)duplicates, (unsigned long long)reordered,
           (unsigned long long)unparsed, (unsigned long long)other_frames, first_other,
           (unsigned long long)net.reading.oversize, (unsigned long long)net.closed, open_subs, stalled ? "true" : "false",
           bench_own_cpu(&w), bench_server_cpu(&w), bench_other_cpu(&w));
    for (int i = 0; i < nsigs; i++) printf("%s\"%s\"", i ? "," : "", sigs[i]);
    printf("],\"connections\":[");
    size_t bytes = sent / 8 + 1;
    for (int i = 0; i < nsubs; i++) {
        conn_t *c = &subs[i];
        printf("%s{\"role\":%d,\"received\":%llu,\"duplicates\":%llu,\"reordered\":%llu,\"unparsed\":%llu,"
               "\"open\":%s,\"signatures\":%u,\"seen\":\"",
               i ? "," : "", c->role, (unsigned long long)c->received, (unsigned long long)c->duplicates,
               (unsigned long long)c->reordered, (unsigned long long)c->unparsed, c->ws.state == WS_READY ? "true" : "false",
               c->sigmask);
        bench_print_hex(c->seen, bytes);
        printf("\"}");
    }
    printf("]}\n");
    return 0;
}
