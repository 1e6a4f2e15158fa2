#!/usr/bin/env python3
"""A stand-in API server for measuring KubeBid's node agent in cluster mode on a machine with no cluster.

It answers what the agent asks: every list is empty, every watch is held open with no events, the one Node
(`bench`) is served and its label, taint and condition patches are taken (200), and Events are accepted
(201). Plain HTTP on loopback; nothing is checked. Usage: mock-apiserver.py PORT
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NODE = {"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "bench", "uid": "u", "resourceVersion": "1", "labels": {}},
        "spec": {}, "status": {}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/api/v1/nodes/bench"):
            return self.reply(200, NODE)
        if "watch=true" in self.path or "watch=1" in self.path:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            time.sleep(3600)
            return
        return self.reply(200, {"apiVersion": "v1", "kind": "List",
                                "metadata": {"resourceVersion": "1"}, "items": []})

    def do_PATCH(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        return self.reply(200, NODE)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        return self.reply(201, json.loads(body or b"{}"))


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
