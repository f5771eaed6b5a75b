#!/usr/bin/python3
"""The lab's alert receiver: a real HTTP server on the head node that appends
every POSTed body (Alertmanager's webhook JSON) as one line to a file, so the
monitoring tests can read which alerts reached it.

    webhook_recorder.py ADDRESS PORT FILE
"""

import http.server
import json
import sys


class Recorder(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            line = json.dumps(json.loads(body), sort_keys=True)
        except ValueError:
            self.send_response(400)
            self.end_headers()
            return
        with open(sys.argv[3], "a", encoding="utf-8") as out:
            out.write(line + "\n")
        self.send_response(200)
        self.end_headers()


if __name__ == "__main__":
    http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Recorder).serve_forever()
