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
#define BENCH_NAME "loadgen"
#include "wsclient.h" /* websocket framing and reader; benchcommon.h: clocks, CPU, histogram, epoll */

#define MAX_EVENTS 1024
#define READ_SIZE (256 * 1024)
#define PREFIX 64       /* payload bytes looked at per frame */
#define SLOTS 65536     /* send times / receive counts by sequence number */

enum { S_WAIT_FIRST = WS_OWN_STATES, S_JOINING };

typedef struct {
    ws_conn_t ws;       /* ws.port: the server this connection goes to (--port or --port2) */
    int is_pub;
    int joiner;
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
static ws_net_t net;

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
static uint64_t total_deliveries = 0, misrouted = 0, other_frames = 0;
static bench_hist_t hist;
static uint64_t last_progress_ns = 0;

static char message_template[4096];
static size_t message_len;
static size_t seq_offset;
static uint8_t pub_out[1 << 20];
static size_t pub_out_len = 0;

static void on_sequenced(conn_t *c, uint64_t seq, uint64_t now) {
    if (c->is_pub) return;
    if (opt_channel && !c->joiner) { misrouted++; return; }
    if ((int64_t)seq <= c->last_seq) c->reordered++;
    c->last_seq = seq;
    c->received++;
    total_deliveries++;
    if (c->ws.port != opt_port) port2_deliveries++;
    uint32_t slot = seq & (SLOTS - 1);
    if (measuring) {
        window_deliveries++;
        bench_hist_record(&hist, now - slot_sent_ns[slot]);
    }
    if (++slot_count[slot] == expected_per_msg) {
        inflight--;
        seq_done++;
        if (measuring) window_messages++;
        last_progress_ns = now;
    }
}

static int on_frame(void *ctx, int opcode, const uint8_t *prefix, size_t prefix_len, uint64_t plen) {
    conn_t *c = ctx;
    if (opcode == 1) {
        /* the sequence marker sits at a fixed offset in our own messages;
         * look for it near there, never decode the JSON */
        if (prefix_len >= seq_offset + 10 && memcmp(prefix + seq_offset - 5, "\"s\":\"", 5) == 0) {
            uint64_t seq = 0;
            const uint8_t *d = prefix + seq_offset;
            for (int i = 0; i < 10; i++) seq = seq * 10 + (d[i] - '0');
            on_sequenced(c, seq, net.reading.now);
            return 0;
        }
        other_frames++;
        if (c->ws.state == S_WAIT_FIRST) {
            if (c->joiner && opt_join_frame) {
                if (ws_send_text(c->ws.fd, opt_join_frame) < 0) bench_die("write");
                c->ws.state = S_JOINING;
            } else {
                ws_net_ready(&net, &c->ws);
            }
        } else if (c->ws.state == S_JOINING) {
            if (!opt_join_ack || memmem(prefix, prefix_len, opt_join_ack, strlen(opt_join_ack)))
                ws_net_ready(&net, &c->ws);
        }
    } else if (opcode == 8) {
        ws_net_fail(&net, &c->ws, "server closed the websocket");
    } else if (opcode == 9) {
        ws_pong(c->ws.fd, prefix, prefix_len, plen);
    }
    return c->ws.state == WS_CLOSED;
}

static void flush_pub(void) {
    while (pub_out_len) {
        ssize_t n = write(pub->ws.fd, pub_out, pub_out_len);
        if (n < 0) {
            if (errno == EAGAIN) { bench_ep_mod(net.epfd, pub->ws.fd, &pub->ws, EPOLLIN | EPOLLOUT); return; }
            bench_die("publisher write");
        }
        memmove(pub_out, pub_out + n, pub_out_len - n);
        pub_out_len -= n;
    }
    bench_ep_mod(net.epfd, pub->ws.fd, &pub->ws, EPOLLIN);
}

static int sending = 0;

static void publish_more(void) {
    if (!sending || pub->ws.state != WS_READY) return;
    int wrote = 0;
    uint64_t now = bench_now_ns();
    while (inflight < (uint64_t)opt_inflight && pub_out_len + message_len + 16 < sizeof pub_out) {
        uint64_t seq = seq_next++;
        bench_stamp_seq(message_template + seq_offset, seq);
        uint32_t slot = seq & (SLOTS - 1);
        if (slot_count[slot] != 0 && slot_count[slot] < expected_per_msg) {
            fprintf(stderr, "loadgen: sequence window wrapped onto an incomplete message\n");
            exit(2);
        }
        slot_count[slot] = 0;
        slot_sent_ns[slot] = now;
        pub_out_len += ws_client_frame(pub_out + pub_out_len, 1, (uint8_t *)message_template, message_len);
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

static void on_open(ws_conn_t *c) { c->state = S_WAIT_FIRST; }

static void on_writable(ws_conn_t *c) {
    if (pub && c == &pub->ws) flush_pub();
}

static void loop_once(int timeout_ms) { ws_net_loop_once(&net, timeout_ms); }

static double s2cpu0 = 0, s2cpu1 = 0; /* the second node's CPU seconds at the window's ends */

static void server2_cpu(int open) { *(open ? &s2cpu0 : &s2cpu1) = bench_process_cpu_seconds(opt_server_pid2); }

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
    bench_loopback_only(opt_host);
    if (opt_duration > 120 || opt_hold > 600 || opt_warmup > 60) { fprintf(stderr, "loadgen: bounded runs only\n"); return 2; }

    bench_raise_nofile();
    ws_net_init(&net, opt_port, PREFIX, 0, READ_SIZE);
    net.on_open = on_open;
    net.on_frame = on_frame;
    net.on_writable = on_writable;
    bench_hist_init(&hist);
    build_template();
    char cookie_header[8192];
    snprintf(cookie_header, sizeof cookie_header, "%s%s%s", opt_cookie ? "Cookie: " : "", opt_cookie ? opt_cookie : "",
             opt_cookie ? "\r\n" : "");
    int is_fanout = strcmp(mode, "fanout") == 0;
    if (!is_fanout && strcmp(mode, "idle") != 0) usage();

    nconns = opt_subs + (is_fanout ? 1 : 0);
    conns = calloc(nconns, sizeof *conns);
    for (int i = 0; i < nconns; i++) {
        conns[i].ws.port = opt_port;
        conns[i].ws.path = opt_path;
        conns[i].ws.extra = cookie_header;
        conns[i].last_seq = -1;
    }
    /* Two nodes: every other subscriber on the second, the publisher on the first. */
    for (int i = 1; opt_port2 && i < opt_subs; i += 2) conns[i].ws.port = opt_port2;
    for (int i = 0; i < opt_subs; i++) conns[i].joiner = i < opt_joiners;
    if (is_fanout) {
        pub = &conns[opt_subs];
        pub->is_pub = 1;
    }
    /* subscribers first, at most opt_concurrent_handshakes in progress */
    uint64_t t_setup = bench_now_ns();
    ws_net_setup(&net, NULL, 0, conns, nconns, sizeof *conns, opt_concurrent_handshakes, opt_setup_timeout);
    double setup_s = (bench_now_ns() - t_setup) / 1e9;

    if (!is_fanout) {
        printf("{\"mode\":\"idle\",\"ready\":%d,\"failed\":%d,\"setup_s\":%.3f}\n", net.ready, net.failed, setup_s);
        fflush(stdout);
        bench_hold(opt_hold, loop_once);
        return 0;
    }

    if (net.ready < nconns || pub->ws.state != WS_READY) {
        printf("{\"mode\":\"fanout\",\"error\":\"setup failed\",\"ready\":%d,\"failed\":%d,\"wanted\":%d}\n", net.ready,
               net.failed, nconns);
        return 1;
    }
    expected_per_msg = opt_channel ? (uint64_t)opt_joiners : (uint64_t)opt_subs;

    /* warmup, then the measured window, then drain */
    sending = 1;
    bench_run_t run = {.warmup_s = opt_warmup, .duration_s = opt_duration, .stall_s = opt_stall,
                       .server_pid = opt_server_pid, .poll_ms = 50, .loop_once = loop_once, .more = publish_more,
                       .edge = server2_cpu, .last_progress_ns = &last_progress_ns, .measuring = &measuring};
    bench_window_t w;
    int stalled = bench_run(&run, &w);
    sending = 0;
    bench_drain(loop_once, &inflight, 3.0, 0.2); /* the grace: late or misrouted frames */

    uint64_t sent = seq_next - 1;
    uint64_t lost = sent * expected_per_msg - total_deliveries;
    uint64_t reordered = 0;
    int open_subs = 0;
    for (int i = 0; i < opt_subs; i++) {
        reordered += conns[i].reordered;
        open_subs += conns[i].ws.state == WS_READY;
    }
    double wall = bench_window_s(&w);
    printf("{\"mode\":\"fanout\",\"subscribers\":%d,\"receivers_per_message\":%llu,\"inflight\":%d,\"message_bytes\":%zu,"
           "\"setup_s\":%.3f,\"window_s\":%.3f,\"messages_per_s\":%.1f,\"deliveries_per_s\":%.1f,",
           opt_subs, (unsigned long long)expected_per_msg, opt_inflight, message_len, setup_s, wall,
           wall ? window_messages / wall : 0, wall ? window_deliveries / wall : 0);
    bench_print_latency("latency_us", &hist);
    printf(",\"sent\":%llu,\"delivered\":%llu,\"lost\":%llu,\"misrouted\":%llu,\"reordered\":%llu,"
           "\"closed_by_server\":%llu,\"open_subscribers\":%d,\"stalled\":%s,"
           "\"loadgen_cpu\":%.3f,\"server_cpu\":%.3f,\"server2_cpu\":%.3f,\"delivered_port2\":%llu}\n",
           (unsigned long long)sent, (unsigned long long)total_deliveries, (unsigned long long)lost,
           (unsigned long long)misrouted, (unsigned long long)reordered, (unsigned long long)net.closed, open_subs,
           stalled ? "true" : "false", bench_own_cpu(&w), bench_server_cpu(&w),
           wall && opt_server_pid2 ? (s2cpu1 - s2cpu0) / wall : -1, (unsigned long long)port2_deliveries);
    return 0;
}
