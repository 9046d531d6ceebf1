"""The sandbox's HTTP server: a plain ThreadingHTTPServer and a route table.

Each request runs on its own thread, so a fault that hangs one answer (query_timeout,
prepay_timeout) never holds up the others; shared state lives behind the ledger's lock.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import unquote, urlsplit

from sandbox import alipay, cashier, control, wechat
from sandbox.app import Sandbox
from sandbox.config import load_config
from sandbox.httpio import Request, Response, html_response, json_response, text_response

logger = logging.getLogger("sandbox")

MAX_BODY_BYTES = 1024 * 1024
STREAM_CHUNK_BYTES = 256 * 1024

Handler = Callable[..., Response]
Route = tuple[str, re.Pattern[str], Handler, bool]  # method, path pattern, handler, wechat auth


def _wechat_prepay(trade_type: str) -> Handler:
    return lambda sb, req: wechat.prepay(sb, req, trade_type)


def _alipay_bill(sb: Sandbox, req: Request, token: str) -> Response:
    found = sb.bills.get(token)
    if found is None:
        return text_response(404, "bill link expired or unknown")
    return Response(
        200,
        found.content,
        [
            ("Content-Type", found.content_type),
            ("Content-Disposition", f"attachment; filename*=UTF-8''{found.filename}"),
        ],
        body_path=found.path,
    )


def _index(sb: Sandbox, req: Request) -> Response:
    return html_response(
        200,
        "<!doctype html><html><head><meta charset='utf-8'><title>Oncepay sandbox gateway</title>"
        "</head><body><h1>Oncepay sandbox gateway</h1><ul>"
        "<li>Alipay: <code>/gateway.do</code></li><li>WeChat Pay v3: <code>/v3/…</code></li>"
        "<li>Control: <a href='/sandbox/ledger'>ledger</a>, <a href='/sandbox/faults'>faults</a>,"
        " <a href='/sandbox/notifications'>notifications</a></li></ul></body></html>",
    )


_SEG = r"(?P<{}>[^/]+)"
ROUTES: list[Route] = [
    ("GET", re.compile(r"^/$"), _index, False),
    ("GET", re.compile(r"^/gateway\.do$"), alipay.handle_gateway, False),
    ("POST", re.compile(r"^/gateway\.do$"), alipay.handle_gateway, False),
    ("GET", re.compile(r"^/bills/alipay/" + _SEG.format("token") + "$"), _alipay_bill, False),
    ("POST", re.compile(r"^/v3/pay/transactions/native$"), _wechat_prepay("NATIVE"), True),
    ("POST", re.compile(r"^/v3/pay/transactions/h5$"), _wechat_prepay("H5"), True),
    ("POST", re.compile(r"^/v3/pay/transactions/app$"), _wechat_prepay("APP"), True),
    ("POST", re.compile(r"^/v3/pay/transactions/jsapi$"), _wechat_prepay("JSAPI"), True),
    (
        "GET",
        re.compile(r"^/v3/pay/transactions/out-trade-no/" + _SEG.format("out_trade_no") + "$"),
        wechat.query,
        True,
    ),
    (
        "GET",
        re.compile(r"^/v3/pay/transactions/id/" + _SEG.format("transaction_id") + "$"),
        wechat.query,
        True,
    ),
    (
        "POST",
        re.compile(
            r"^/v3/pay/transactions/out-trade-no/" + _SEG.format("out_trade_no") + "/close$"
        ),
        wechat.close,
        True,
    ),
    ("POST", re.compile(r"^/v3/refund/domestic/refunds$"), wechat.refund, True),
    (
        "GET",
        re.compile(r"^/v3/refund/domestic/refunds/" + _SEG.format("out_refund_no") + "$"),
        wechat.refund_query,
        True,
    ),
    ("GET", re.compile(r"^/v3/bill/tradebill$"), wechat.tradebill, True),
    ("GET", re.compile(r"^/v3/billdownload/file$"), wechat.bill_download, True),
    (
        "GET",
        re.compile(r"^/cashier/(?P<channel>alipay|wechat)/" + _SEG.format("otn_tail") + "$"),
        cashier.show,
        False,
    ),
    (
        "POST",
        re.compile(r"^/cashier/(?P<channel>alipay|wechat)/" + _SEG.format("otn_tail") + "/pay$"),
        cashier.pay,
        False,
    ),
    ("POST", re.compile(r"^/sandbox/pay$"), control.pay, False),
    ("GET", re.compile(r"^/sandbox/faults$"), control.get_faults, False),
    ("POST", re.compile(r"^/sandbox/faults$"), control.set_faults, False),
    ("GET", re.compile(r"^/sandbox/ledger$"), control.ledger, False),
    ("GET", re.compile(r"^/sandbox/notifications$"), control.notifications, False),
    ("POST", re.compile(r"^/sandbox/reset$"), control.reset, False),
]


def dispatch(sb: Sandbox, req: Request) -> Response:
    path_matched = False
    for method, pattern, handler, needs_wechat_auth in ROUTES:
        match = pattern.match(req.path)
        if match is None:
            continue
        path_matched = True
        if method != req.method:
            continue
        if needs_wechat_auth:
            rejected = wechat.authenticate(sb, req)
            if rejected is not None:
                return rejected
        kwargs = {name: unquote(value) for name, value in match.groupdict().items()}
        return handler(sb, req, **kwargs)
    if path_matched:
        return json_response(405, {"code": "METHOD_NOT_ALLOWED", "message": "method not allowed"})
    if req.path.startswith("/v3/"):
        return json_response(404, {"code": "NOT_FOUND", "message": "no such API"})
    return text_response(404, "not found")


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], make_sandbox: Callable[[int], Sandbox]) -> None:
        super().__init__(address, SandboxRequestHandler)
        # Built after binding, so that port 0 (any free port) still yields the right base URL.
        self.sandbox = make_sandbox(int(self.server_address[1]))


class SandboxRequestHandler(BaseHTTPRequestHandler):
    server: SandboxServer
    protocol_version = "HTTP/1.1"
    server_version = "OncepaySandbox/1.0"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._send(text_response(400, "bad Content-Length"))
            self.close_connection = True
            return
        if length > MAX_BODY_BYTES:
            self._send(text_response(413, "request body too large"))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        req = Request(
            method=self.command,
            target=self.path,
            path=split.path,
            query=split.query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        try:
            response = dispatch(self.server.sandbox, req)
        except Exception:
            logger.exception("unhandled error on %s %s", self.command, self.path)
            response = text_response(500, "sandbox internal error")
        if response.hang_seconds:
            time.sleep(response.hang_seconds)
        if response.drop_connection:
            # prepay_timeout: the answer never comes; the client sees the connection close.
            self.close_connection = True
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.body_path:
            self.send_header("Content-Length", str(os.path.getsize(response.body_path)))
        elif response.status != 204:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if response.body_path:
            with open(response.body_path, "rb") as body:
                while chunk := body.read(STREAM_CHUNK_BYTES):
                    self.wfile.write(chunk)
        elif response.body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:
        logger.info("%s %s", self.address_string(), format % args)


def base_url_for(host: str, port: int) -> str:
    # A wildcard bind address is not somewhere a client can go; loopback is.
    reachable = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104
    if ":" in reachable:
        reachable = f"[{reachable}]"
    return f"http://{reachable}:{port}"


def build(host: str, port: int, base_url: str | None = None) -> SandboxServer:
    """Bind the server (port 0 picks a free one) without serving yet."""
    return SandboxServer(
        (host, port),
        lambda bound_port: Sandbox(load_config(base_url or base_url_for(host, bound_port))),
    )


def serve(host: str, port: int, base_url: str | None = None) -> None:
    logging.basicConfig(
        level=os.environ.get("SANDBOX_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    server = build(host, port, base_url)
    sandbox = server.sandbox
    sandbox.start()

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    logger.info(
        "sandbox gateway listening on %s (base URL %s)", server.server_address, sandbox.base_url
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
        server.server_close()
        logger.info("sandbox gateway stopped")
