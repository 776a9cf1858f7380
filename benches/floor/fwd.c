// Forwarding server: accepts a producer connection, then a consumer connection;
// everything read from the producer is written to the consumer; what the
// consumer sends (acks) is read and dropped. One thread, epoll, like one runtime worker.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int port = atoi(argv[1]);
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (bind(l, (void *)&a, sizeof a) || listen(l, 4)) { perror("bind"); return 1; }
  int p = accept(l, 0, 0), c = accept(l, 0, 0);
  setsockopt(p, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int ep = epoll_create1(0);
  struct epoll_event e = {.events = EPOLLIN, .data.fd = p};
  epoll_ctl(ep, EPOLL_CTL_ADD, p, &e);
  e.data.fd = c;
  epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
  char buf[65536];
  for (;;) {
    struct epoll_event ev[4];
    int n = epoll_wait(ep, ev, 4, -1);
    for (int i = 0; i < n; i++) {
      ssize_t r = read(ev[i].data.fd, buf, sizeof buf);
      if (r <= 0) return 0;
      if (ev[i].data.fd == p) write(c, buf, r);
    }
  }
}
