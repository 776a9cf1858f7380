#!/usr/bin/env python3
"""Development server for Warren's management UI (Python standard library only).

Serves the UI's static files from src/http/ui/ and forwards every /api/...
request, unchanged, to a management API (RabbitMQ's or Warren's), so the UI
can be worked on and tested against a real broker without building Warren:

    python3 interop/ui/devserver.py --upstream http://127.0.0.1:15673 --port 8088
    # then open http://127.0.0.1:8088/

Files are read from disk on every request: edit, reload, see.
"""

import argparse
import http.client
import http.server
import mimetypes
import os
import sys
import urllib.parse

UI_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "http", "ui"))

# Headers that belong to one hop, not to the request or the answer.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}

TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}


class Handler(http.server.BaseHTTPRequestHandler):
    upstream = None  # urllib.parse.SplitResult, set in main()
    quiet = False
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if not self.quiet:
            sys.stderr.write("devserver: " + (fmt % args) + "\n")

    def _dispatch(self):
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/api/") or path == "/api":
            self._proxy()
        elif self.command in ("GET", "HEAD"):
            self._static(path)
        else:
            self._send(405, b"method not allowed\n", "text/plain")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def _static(self, path):
        rel = "index.html" if path in ("", "/") else urllib.parse.unquote(path.lstrip("/"))
        full = os.path.normpath(os.path.join(UI_DIR, rel))
        if not full.startswith(UI_DIR + os.sep) or not os.path.isfile(full):
            self._send(404, b"not found\n", "text/plain")
            return
        with open(full, "rb") as f:
            body = f.read()
        ext = os.path.splitext(full)[1]
        self._send(200, body, TYPES.get(ext) or mimetypes.guess_type(full)[0] or "application/octet-stream",
                   {"Cache-Control": "no-store"})

    def _proxy(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        conn_cls = http.client.HTTPSConnection if self.upstream.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(self.upstream.hostname, self.upstream.port, timeout=120)
        try:
            conn.request(self.command, self.upstream.path.rstrip("/") + self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            extra = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP and k.lower() != "content-type"}
            self._send(resp.status, data, resp.getheader("Content-Type"), extra)
        except OSError as e:
            msg = ('{"error":"bad_gateway","reason":"devserver: upstream %s: %s"}' % (self.upstream.netloc, e)).encode()
            self._send(502, msg, "application/json")
        finally:
            conn.close()

    def _send(self, status, body, ctype, extra=None):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", default=os.environ.get("UI_UPSTREAM", "http://127.0.0.1:15672"),
                    help="management API base URL, without /api (default %(default)s)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8088, help="0 picks a free port (printed on start)")
    ap.add_argument("--quiet", action="store_true", help="do not log requests")
    args = ap.parse_args()
    Handler.upstream = urllib.parse.urlsplit(args.upstream)
    Handler.quiet = args.quiet
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print("devserver: http://%s:%d/ (UI from %s, /api -> %s)" % (args.host, server.server_address[1], UI_DIR, args.upstream),
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
