"""The control API for people and test harnesses (contract.md, "Sandbox gateway").

Never part of either gateway's protocol, so it needs no signatures; the shop never calls it.
"""

from __future__ import annotations

import json
from typing import Any

from sandbox import buyer, timeutil
from sandbox.app import Sandbox
from sandbox.faults import FaultSettingError
from sandbox.httpio import Request, Response, error_json, json_response
from sandbox.state import PayRefused, ledger_entry


def _json_object(req: Request) -> dict[str, Any] | None:
    try:
        payload = json.loads(req.body.decode("utf-8") or "{}")
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def pay(sb: Sandbox, req: Request) -> Response:
    payload = _json_object(req)
    if payload is None:
        return error_json(400, "invalid_json", "expected a JSON object")
    channel = payload.get("channel")
    out_trade_no = payload.get("out_trade_no")
    if not isinstance(channel, str) or not isinstance(out_trade_no, str):
        return error_json(400, "invalid_request", "channel and out_trade_no are required strings")
    try:
        trade = buyer.pay(sb, channel, out_trade_no)
    except PayRefused as refused:
        status = 404 if refused.code == "trade_not_found" else 409
        return error_json(status, refused.code, refused.detail)
    with sb.ledger.lock:
        return json_response(200, ledger_entry(trade, timeutil.now()))


def get_faults(sb: Sandbox, req: Request) -> Response:
    return json_response(200, sb.faults.snapshot())


def set_faults(sb: Sandbox, req: Request) -> Response:
    payload = _json_object(req)
    if payload is None:
        return error_json(400, "invalid_json", "expected a JSON object")
    try:
        return json_response(200, sb.faults.update(payload))
    except FaultSettingError as exc:
        return error_json(400, "invalid_fault", str(exc))


def ledger(sb: Sandbox, req: Request) -> Response:
    params = req.query_params()
    wanted_otn = params.get("out_trade_no")
    wanted_channel = params.get("channel")
    now = timeutil.now()
    with sb.ledger.lock:
        trades = [
            ledger_entry(trade, now)
            for trade in sb.ledger.all()
            if (wanted_otn is None or trade.out_trade_no == wanted_otn)
            and (wanted_channel is None or trade.channel == wanted_channel)
        ]
    return json_response(200, {"trades": trades})


def notifications(sb: Sandbox, req: Request) -> Response:
    """Every logical notification with its attempts: how notify faults become observable."""
    wanted = req.query_params().get("out_trade_no")
    items = [n for n in sb.notifier.snapshot() if wanted is None or n["out_trade_no"] == wanted]
    return json_response(200, {"notifications": items})


def reset(sb: Sandbox, req: Request) -> Response:
    sb.reset()
    return json_response(200, {"reset": True})
