// Paced client: every millisecond writes 256 B (a timestamp first) on the
// producer connection, waits in ppoll for it on the consumer connection,
// records the latency, then writes a 21-byte "ack" on the consumer connection.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static long long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
static int conn(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(s, (void *)&a, sizeof a)) { perror("connect"); exit(1); }
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return s;
}
static int cmp(const void *a, const void *b) { long long x = *(long long *)a, y = *(long long *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
  int port = atoi(argv[1]), n = atoi(argv[2]), warm = 2000;
  int p = conn(port); usleep(10000); int c = conn(port);
  long long *lat = malloc(sizeof(long long) * n);
  char msg[256], in[256], ack[21];
  memset(msg, 'x', sizeof msg); memset(ack, 'a', sizeof ack);
  long long next = now() + 1000000;
  for (int i = 0; i < n + warm; i++) {
    for (;;) {  // wait for the send time
      long long d = next - now();
      if (d <= 0) break;
      struct timespec ts = {d / 1000000000, d % 1000000000};
      ppoll(0, 0, &ts, 0);
    }
    next += 1000000;
    long long t0 = now();
    memcpy(msg, &t0, 8);
    write(p, msg, sizeof msg);
    size_t got = 0;
    while (got < sizeof in) {
      struct pollfd pf = {.fd = c, .events = POLLIN};
      ppoll(&pf, 1, 0, 0);
      ssize_t r = read(c, in + got, sizeof in - got);
      if (r <= 0) return 1;
      got += r;
    }
    long long t1 = now(), sent;
    memcpy(&sent, in, 8);
    if (i >= warm) lat[i - warm] = t1 - sent;
    write(c, ack, sizeof ack);
  }
  qsort(lat, n, sizeof *lat, cmp);
  printf("p50 %.1f p99 %.1f p99.9 %.1f max %.1f us\n", lat[n / 2] / 1e3, lat[n * 99 / 100] / 1e3, lat[n * 999 / 1000] / 1e3, lat[n - 1] / 1e3);
}
