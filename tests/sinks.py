"""Local stand-ins for Slack, PagerDuty and SMTP, which cannot run here, and a rendering of the shipped
Alertmanager configuration that points at them (secret files written to a temp dir)."""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
AM_DIR = ROOT / "alertmanager"
CONFIG = AM_DIR / "alertmanager.yml"
SECRETS_DIR = "/etc/alertmanager/secrets/"


def render_config(tmp_path: Path, slack_url: str, pagerduty_url: str, smtp_port: int = 9) -> Path:
    """A copy of the config whose secret files exist under tmp_path, with test endpoints."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "slack-webhook-url").write_text(slack_url)
    (secrets / "pagerduty-routing-key").write_text("test-routing-key-0123456789abcdef")
    (secrets / "smtp-password").write_text("test-smtp-password")
    text = CONFIG.read_text().replace(SECRETS_DIR, f"{secrets}/")
    cfg = yaml.safe_load(text)
    cfg["global"]["pagerduty_url"] = pagerduty_url
    cfg["global"]["smtp_smarthost"] = f"127.0.0.1:{smtp_port}"
    cfg["global"]["smtp_require_tls"] = False
    cfg["templates"] = [str(AM_DIR / "templates" / "*.tmpl")]
    out = tmp_path / "alertmanager.yml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


class Sink:
    """Records the JSON bodies POSTed to it, by path: a stand-in for Slack and PagerDuty."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with sink.lock:
                    sink.received.append((self.path, json.loads(body)))
                self.send_response(202 if self.path.startswith("/pagerduty") else 200)
                self.end_headers()
                self.wfile.write(b'{"status":"success"}' if self.path.startswith("/pagerduty") else b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def messages(self, path: str) -> list[dict]:
        with self.lock:
            return [body for p, body in self.received if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpSink:
    """A minimal SMTP server (no TLS, no AUTH advertised) that keeps the messages it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                rcpts: list[str] = []
                self.reply("220 sink ESMTP")
                while line := self.rfile.readline():
                    verb = line.decode(errors="replace").strip().split(" ", 1)[0].upper()
                    if verb == "EHLO":
                        self.wfile.write(b"250-sink\r\n250 8BITMIME\r\n")
                    elif verb == "RCPT":
                        rcpts.append(line.decode().split(":", 1)[1].strip().strip("<>"))
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 go on")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk[1:] if chunk.startswith(b"..") else chunk
                        message = email.message_from_bytes(data, policy=email.policy.default)
                        with sink.lock:
                            sink.messages.append((rcpts, message))
                        rcpts = []
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 ok")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self) -> list[tuple[list[str], email.message.EmailMessage]]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
