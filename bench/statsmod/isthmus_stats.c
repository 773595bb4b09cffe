/* A probe for bench/dataplane.py's ablation ("ALS -> C module"): what Istio's metrics would cost Envoy
 * if a dynamic-module access logger built them in the proxy, as istio-proxy's C++ stats filter does,
 * instead of a gRPC access-log entry per request that the control plane turns into metrics.
 *
 * Per request it reads what the control plane's telemetry reads from an entry (response code and
 * flags, routed cluster, route, upstream address, the peer's URI SAN, :authority, content-type, bytes,
 * timings), and adds the request to a series keyed by those values: a count and Istio's duration and
 * size histograms. The series stay in the worker's table (a real module would ship the deltas to the
 * control plane every flush interval; that is per interval, not per request, so the probe leaves it out).
 *
 * Built with -DPROBE_DEBUG, it prints its series to Envoy's stderr when a worker's logger is destroyed
 * (Envoy's shutdown), which shows that it saw the requests.
 *
 * The callback declarations are the x86-64 signatures Envoy 1.40's binary exports (read from its
 * disassembly, argument registers and return types), not a header: the ABI changes between releases.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char* ptr;
  size_t length;
} buf_t;

#define CB(name) envoy_dynamic_module_callback_access_logger_##name
extern uint32_t CB(get_response_code)(void* ctx);
extern uint64_t CB(get_response_flags)(void* ctx);
extern bool CB(get_upstream_cluster)(void* ctx, buf_t* out);
extern bool CB(get_route_name)(void* ctx, buf_t* out);
extern bool CB(get_upstream_remote_address)(void* ctx, buf_t* address, uint32_t* port);
extern bool CB(get_downstream_direct_remote_address)(void* ctx, buf_t* address, uint32_t* port);
extern size_t CB(get_upstream_peer_uri_san_size)(void* ctx);
extern bool CB(get_upstream_peer_uri_san)(void* ctx, buf_t* out);
extern size_t CB(get_downstream_peer_uri_san_size)(void* ctx);
extern bool CB(get_downstream_peer_uri_san)(void* ctx, buf_t* out);
extern bool CB(get_header_value)(void* ctx, int header_type, buf_t key, buf_t* out, size_t index,
                                 size_t* total);
extern void CB(get_bytes_info)(void* ctx, uint64_t* out);
extern void CB(get_timing_info)(void* ctx, int64_t* out);

static const char kAbiVersion[] = "isthmus-bench-probe";
const char* envoy_dynamic_module_on_program_init(void) { return kAbiVersion; }

/* Istio's default buckets (istio_request_duration_milliseconds; the byte-size histograms). */
static const double kDurationMs[] = {0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
                                     30000, 60000, 300000, 600000, 1800000, 3600000};
static const double kBytes[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
#define N_DURATION (sizeof(kDurationMs) / sizeof(kDurationMs[0]))
#define N_BYTES (sizeof(kBytes) / sizeof(kBytes[0]))

typedef struct {
  uint64_t hash;
  char* key;
  size_t key_len;
  uint64_t requests;
  double duration_sum, received_sum, sent_sum;
  uint64_t duration[N_DURATION + 1], received[N_BYTES + 1], sent[N_BYTES + 1];
} series_t;

#define TABLE_SIZE 4096 /* a sidecar's distinct (peer, code, flags) series; full table: new ones dropped */
typedef struct {
  series_t slots[TABLE_SIZE];
  uint64_t dropped;
} logger_t;

static size_t bucket(const double* bounds, size_t n, double v) {
  size_t i = 0;
  while (i < n && v > bounds[i]) i++;
  return i;
}

typedef struct {
  char data[1024];
  size_t len;
} key_t_;

static void put(key_t_* k, const char* p, size_t n) {
  if (k->len + n + 1 > sizeof(k->data)) n = sizeof(k->data) - k->len - 1;
  memcpy(k->data + k->len, p, n);
  k->len += n;
  k->data[k->len++] = '\x1f';
}

static void put_buf(key_t_* k, bool ok, buf_t b) { put(k, ok ? b.ptr : "", ok ? b.length : 0); }

static size_t u64_text(char* out, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do tmp[n++] = (char)('0' + v % 10); while ((v /= 10) != 0);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

static uint64_t fnv1a(const char* p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
  return h;
}

static void add_san(key_t_* k, void* ctx, size_t (*size)(void*), bool (*get)(void*, buf_t*)) {
  buf_t sans[4];
  size_t n = size(ctx);
  bool ok = n > 0 && n <= 4 && get(ctx, sans);
  put_buf(k, ok, ok ? sans[0] : (buf_t){0, 0});
}

void* envoy_dynamic_module_on_access_logger_config_new(void* config_envoy, buf_t name, buf_t config) {
  (void)config_envoy, (void)name, (void)config;
  static int config_token;
  return &config_token;
}

void envoy_dynamic_module_on_access_logger_config_destroy(void* config) { (void)config; }

void* envoy_dynamic_module_on_access_logger_new(void* config, void* logger_envoy) {
  (void)config, (void)logger_envoy;
  return calloc(1, sizeof(logger_t));
}

void envoy_dynamic_module_on_access_logger_log(void* ctx, void* self, int log_type) {
  (void)log_type;
  logger_t* lg = self;
  key_t_ k = {.len = 0};
  buf_t b, addr;
  uint32_t port = 0;
  char num[48];

  uint32_t code = CB(get_response_code)(ctx);
  uint64_t flags = CB(get_response_flags)(ctx);
  put(&k, num, u64_text(num, code));
  put(&k, num, u64_text(num, flags));
  bool ok = CB(get_upstream_cluster)(ctx, &b);
  put_buf(&k, ok, b);
  ok = CB(get_route_name)(ctx, &b);
  put_buf(&k, ok, b);
  ok = CB(get_upstream_remote_address)(ctx, &addr, &port);
  put_buf(&k, ok, addr);
  ok = CB(get_downstream_direct_remote_address)(ctx, &addr, &port);
  put_buf(&k, ok, addr);
  add_san(&k, ctx, CB(get_upstream_peer_uri_san_size), CB(get_upstream_peer_uri_san));
  add_san(&k, ctx, CB(get_downstream_peer_uri_san_size), CB(get_downstream_peer_uri_san));
  size_t total = 0;
  ok = CB(get_header_value)(ctx, 0, (buf_t){":authority", 10}, &b, 0, &total);
  put_buf(&k, ok, b);
  ok = CB(get_header_value)(ctx, 0, (buf_t){"content-type", 12}, &b, 0, &total);
  put(&k, ok && b.length >= 16 && memcmp(b.ptr, "application/grpc", 16) == 0 ? "g" : "h", 1);

  uint64_t bytes[16] = {0};
  int64_t timing[32];
  memset(timing, 0xff, sizeof(timing));
  CB(get_bytes_info)(ctx, bytes);
  CB(get_timing_info)(ctx, timing);

  uint64_t h = fnv1a(k.data, k.len);
  for (size_t probe = 0; probe < TABLE_SIZE; probe++) {
    series_t* s = &lg->slots[(h + probe) & (TABLE_SIZE - 1)];
    if (s->key == NULL) {
      s->key = malloc(k.len);
      if (s->key == NULL) return;
      memcpy(s->key, k.data, k.len);
      s->key_len = k.len, s->hash = h;
    } else if (s->hash != h || s->key_len != k.len || memcmp(s->key, k.data, k.len) != 0) {
      continue;
    }
    /* The probe takes the largest of the first timing fields as the duration: its cost is the read, and
     * the struct's field order is not part of what it measures. */
    int64_t last = -1;
    for (int i = 1; i < 8; i++)
      if (timing[i] > last) last = timing[i];
    double ms = last > 0 ? (double)last / 1e6 : 0.0;
    s->requests++;
    s->duration_sum += ms, s->received_sum += (double)bytes[0], s->sent_sum += (double)bytes[1];
    s->duration[bucket(kDurationMs, N_DURATION, ms)]++;
    s->received[bucket(kBytes, N_BYTES, (double)bytes[0])]++;
    s->sent[bucket(kBytes, N_BYTES, (double)bytes[1])]++;
    return;
  }
  lg->dropped++;
}

void envoy_dynamic_module_on_access_logger_flush(void* self) { (void)self; }

void envoy_dynamic_module_on_access_logger_destroy(void* self) {
  logger_t* lg = self;
#ifdef PROBE_DEBUG
  for (size_t i = 0; i < TABLE_SIZE; i++)
    if (lg->slots[i].key != NULL)
      fprintf(stderr, "series %.*s requests=%llu duration_sum=%.3f sent_sum=%.0f\n",
              (int)lg->slots[i].key_len, lg->slots[i].key, (unsigned long long)lg->slots[i].requests,
              lg->slots[i].duration_sum, lg->slots[i].sent_sum);
#endif
  for (size_t i = 0; i < TABLE_SIZE; i++) free(lg->slots[i].key);
  free(lg);
}
