"""Stand-in app server for the nginx scenario (test fixture, not part of any role).

Answers every GET with JSON naming itself and echoing the request headers it received;
``/slow?seconds=N`` answers after N seconds (at most 30); a WebSocket handshake
(``Upgrade: websocket``) is accepted with 101 and one text frame naming the server.
"""

import argparse
import base64
import hashlib
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_name_label = "standin"

    def log_message(self, fmt, *args):
        pass

    def _send_json(self, status, body):
        data = (json.dumps(body, sort_keys=True) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _websocket(self):
        accept = base64.b64encode(
            hashlib.sha1((self.headers["Sec-WebSocket-Key"] + WS_GUID).encode(), usedforsecurity=False).digest()
        ).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        payload = ("hello from %s" % self.server_name_label).encode()
        self.wfile.write(bytes([0x81, len(payload)]) + payload)  # one unmasked text frame
        self.wfile.flush()
        self.close_connection = True

    def do_GET(self):
        url = urlsplit(self.path)
        if self.headers.get("Upgrade", "").lower() == "websocket" and "Sec-WebSocket-Key" in self.headers:
            self._websocket()
            return
        if url.path == "/slow":
            seconds = min(float(parse_qs(url.query).get("seconds", ["1"])[0]), 30.0)
            time.sleep(seconds)
        self._send_json(
            200,
            {
                "server": self.server_name_label,
                "path": self.path,
                "client": self.client_address[0],
                "headers": {key.lower(): value for key, value in self.headers.items()},
            },
        )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    Handler.server_name_label = args.name
    ThreadingHTTPServer((args.address, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
