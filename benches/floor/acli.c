// Minimal AMQP 0-9-1 latency client in C: two connections (producer, consumer),
// every millisecond basic.publish 256 B (timestamp first) to queue "floor-latency",
// wait in ppoll for the basic.deliver on the consumer connection, record the
// latency, basic.ack it. Same pattern as the perf tool's paired mode.
// Usage: acli PORT COUNT (WARM in the environment: unrecorded messages first, 2000).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static long long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
typedef struct { uint8_t b[4096]; size_t n; } B;
static void u8(B *b, uint8_t v) { b->b[b->n++] = v; }
static void u16(B *b, uint16_t v) { u8(b, v >> 8); u8(b, v); }
static void u32(B *b, uint32_t v) { u16(b, v >> 16); u16(b, v); }
static void u64(B *b, uint64_t v) { u32(b, v >> 32); u32(b, v); }
static void sstr(B *b, const char *s) { u8(b, strlen(s)); memcpy(b->b + b->n, s, strlen(s)); b->n += strlen(s); }
static void lstr(B *b, const char *s, size_t l) { u32(b, l); memcpy(b->b + b->n, s, l); b->n += l; }
// method frame: start returns the offset of the size field
static size_t fstart(B *b, uint8_t type, uint16_t ch) { u8(b, type); u16(b, ch); size_t at = b->n; u32(b, 0); return at; }
static void fend(B *b, size_t at) { uint32_t sz = b->n - at - 4; b->b[at] = sz >> 24; b->b[at + 1] = sz >> 16; b->b[at + 2] = sz >> 8; b->b[at + 3] = sz; u8(b, 0xCE); }
static void sendall(int s, B *b) { size_t o = 0; while (o < b->n) { ssize_t r = write(s, b->b + o, b->n - o); if (r <= 0) { perror("write"); exit(1); } o += r; } b->n = 0; }
static void drain(int s) { char x[65536]; usleep(30000); struct pollfd p = {s, POLLIN}; while (poll(&p, 1, 20) > 0) { if (read(s, x, sizeof x) <= 0) exit(1); } }
static int open_conn(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(s, (void *)&a, sizeof a)) { perror("connect"); exit(1); }
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  B b = {0}; size_t at;
  write(s, "AMQP\0\0\x09\x01", 8); drain(s);
  at = fstart(&b, 1, 0); u16(&b, 10); u16(&b, 11); u32(&b, 0); sstr(&b, "PLAIN"); lstr(&b, "\0guest\0guest", 12); sstr(&b, "en_US"); fend(&b, at);
  at = fstart(&b, 1, 0); u16(&b, 10); u16(&b, 31); u16(&b, 2047); u32(&b, 131072); u16(&b, 0); fend(&b, at);
  at = fstart(&b, 1, 0); u16(&b, 10); u16(&b, 40); sstr(&b, "/"); sstr(&b, ""); u8(&b, 0); fend(&b, at);
  at = fstart(&b, 1, 1); u16(&b, 20); u16(&b, 10); sstr(&b, ""); fend(&b, at);
  at = fstart(&b, 1, 1); u16(&b, 50); u16(&b, 10); u16(&b, 0); sstr(&b, "floor-latency"); u8(&b, 8); u32(&b, 0); fend(&b, at);
  sendall(s, &b); drain(s);
  return s;
}
static int cmp(const void *a, const void *b) { long long x = *(long long *)a, y = *(long long *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: acli PORT COUNT\n"); return 2; }
  int port = atoi(argv[1]), n = atoi(argv[2]), warm = getenv("WARM") ? atoi(getenv("WARM")) : 2000;
  int p = open_conn(port), c = open_conn(port);
  B b = {0}; size_t at;
  // basic.qos prefetch-count 1000, as the perf tool's latency scenario sets
  at = fstart(&b, 1, 1); u16(&b, 60); u16(&b, 10); u32(&b, 0); u16(&b, 1000); u8(&b, 0); fend(&b, at);
  at = fstart(&b, 1, 1); u16(&b, 60); u16(&b, 20); u16(&b, 0); sstr(&b, "floor-latency"); sstr(&b, "ctag"); u8(&b, 0); u32(&b, 0); fend(&b, at);
  sendall(c, &b); drain(c);
  long long *lat = malloc(sizeof(long long) * n);
  char body[256]; memset(body, 'x', sizeof body);
  static uint8_t in[65536];
  long long next = now() + 1000000;
  for (int i = 0; i < n + warm; i++) {
    for (;;) { long long d = next - now(); if (d <= 0) break; struct timespec ts = {d / 1000000000, d % 1000000000}; ppoll(0, 0, &ts, 0); }
    next += 1000000;
    long long t0 = now(); memcpy(body, &t0, 8);
    at = fstart(&b, 1, 1); u16(&b, 60); u16(&b, 40); u16(&b, 0); sstr(&b, ""); sstr(&b, "floor-latency"); u8(&b, 0); fend(&b, at);
    at = fstart(&b, 2, 1); u16(&b, 60); u16(&b, 0); u64(&b, sizeof body); u16(&b, 0); fend(&b, at);
    at = fstart(&b, 3, 1); memcpy(b.b + b.n, body, sizeof body); b.n += sizeof body; fend(&b, at);
    sendall(p, &b);
    // read frames until the body frame (type 3) has arrived whole
    size_t got = 0, off = 0; int done = 0; long long sent = 0;
    while (!done) {
      struct pollfd pf = {c, POLLIN}; ppoll(&pf, 1, 0, 0);
      ssize_t r = read(c, in + got, sizeof in - got); if (r <= 0) return 1; got += r;
      while (got - off >= 7) {
        uint32_t sz = (in[off + 3] << 24) | (in[off + 4] << 16) | (in[off + 5] << 8) | in[off + 6];
        if (got - off < 8 + sz) break;
        if (in[off] == 3) { memcpy(&sent, in + off + 7, 8); done = 1; }
        off += 8 + sz;
      }
    }
    long long t1 = now();
    if (i >= warm) lat[i - warm] = t1 - sent;
    at = fstart(&b, 1, 1); u16(&b, 60); u16(&b, 80); u64(&b, i + 1); u8(&b, 0); fend(&b, at);
    sendall(c, &b);
  }
  qsort(lat, n, sizeof *lat, cmp);
  printf("p50 %.1f p99 %.1f p99.9 %.1f max %.1f us\n", lat[n / 2] / 1e3, lat[n * 99 / 100] / 1e3, lat[n * 999 / 1000] / 1e3, lat[n - 1] / 1e3);
}
