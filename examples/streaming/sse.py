#!/usr/bin/env python3
"""A Server-Sent Events backend for examples/streaming: one event a second, forever.

    python3 examples/streaming/sse.py 127.0.0.1:9500
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Events(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        # A client reconnecting says where it stopped; the stream goes on from there.
        n = int(self.headers.get("Last-Event-ID", "0") or 0)
        try:
            while True:
                n += 1
                event = f"id: {n}\nevent: tick\ndata: {json.dumps({'n': n, 'ts': time.time()})}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
                time.sleep(1)
        except (BrokenPipeError, ConnectionResetError):
            pass


if __name__ == "__main__":
    host, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9500").rsplit(":", 1)
    ThreadingHTTPServer((host, int(port)), Events).serve_forever()
