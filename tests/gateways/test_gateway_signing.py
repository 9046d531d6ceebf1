"""Shared signing and amount helpers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import override_settings

from payments.gateways import signing
from payments.gateways.alipay import AlipayGateway, raw_members
from payments.gateways.registry import CHANNELS, get_gateway
from payments.gateways.wechatpay import WechatPayGateway


def test_rsa_round_trip(creds: dict[str, Any]) -> None:
    private = signing.load_private_key(creds["alipay"]["app_private_key_pem"])
    public = signing.load_public_key(creds["alipay"]["app_public_key_pem"])
    signature = signing.rsa_sign(private, "支付 a=1&b=2".encode())
    assert "\n" not in signature
    assert signing.rsa_verify(public, "支付 a=1&b=2".encode(), signature)
    assert not signing.rsa_verify(public, "支付 a=1&b=3".encode(), signature)
    assert not signing.rsa_verify(public, b"x", "not base64!")
    assert not signing.rsa_verify(public, b"x", "")
    other = signing.load_public_key(creds["alipay"]["alipay_public_key_pem"])
    assert not signing.rsa_verify(other, "支付 a=1&b=2".encode(), signature)


def test_sorted_pairs_content() -> None:
    params = {"b": "2", "a": "1", "sign": "S", "sign_type": "RSA2", "empty": ""}
    assert (
        signing.sorted_pairs_content(params, exclude=("sign",), drop_empty=True)
        == "a=1&b=2&sign_type=RSA2"
    )
    assert (
        signing.sorted_pairs_content(params, exclude=("sign", "sign_type"), drop_empty=False)
        == "a=1&b=2&empty="
    )


@pytest.mark.parametrize(
    ("minor", "yuan"), [(1, "0.01"), (10, "0.10"), (12345, "123.45"), (100000000, "1000000.00")]
)
def test_amounts(minor: int, yuan: str) -> None:
    assert signing.minor_to_yuan(minor) == yuan
    assert signing.yuan_to_minor(yuan) == minor


@pytest.mark.parametrize("bad", ["", "abc", "1.001", "NaN", "Infinity", "0.1.2"])
def test_bad_yuan(bad: str) -> None:
    with pytest.raises(ValueError):
        signing.yuan_to_minor(bad)


def test_yuan_negative_and_float_rejected() -> None:
    assert signing.yuan_to_minor("-0.50") == -50
    with pytest.raises(TypeError):
        signing.minor_to_yuan(1.5)  # type: ignore[arg-type]


def test_china_time() -> None:
    moment = dt.datetime(2024, 1, 1, 16, 30, tzinfo=dt.UTC)
    assert signing.to_china_time(moment).strftime("%Y-%m-%d %H:%M:%S") == "2024-01-02 00:30:00"
    assert signing.parse_china_time("2024-01-02 00:30:00") == moment
    assert signing.parse_china_time("") is None
    assert signing.parse_china_time("yesterday") is None


def test_raw_members_keeps_exact_text() -> None:
    body = '{ "a_response" : {"x": "1",  "y":{"z":"}"}} ,"sign":"S" }'
    assert raw_members(body) == {"a_response": '{"x": "1",  "y":{"z":"}"}}', "sign": '"S"'}
    assert raw_members('{"a":1,"a":2}') is None  # duplicate keys are ambiguous
    assert raw_members('{"a":1} trailing') is None
    assert raw_members("[1]") is None
    assert raw_members("{}") == {}


def test_registry_builds_and_caches(creds: dict[str, Any]) -> None:
    assert CHANNELS == ("alipay", "wechat")
    alipay = get_gateway("alipay")
    assert isinstance(alipay, AlipayGateway)
    assert get_gateway("alipay") is alipay
    assert isinstance(get_gateway("wechat"), WechatPayGateway)
    with pytest.raises(KeyError):
        get_gateway("stripe")


def test_registry_follows_settings_overrides() -> None:
    from django.conf import settings

    before = get_gateway("alipay")
    config = {**settings.PAYMENT_GATEWAYS["alipay"], "GATEWAY_URL": "http://elsewhere/gateway.do"}
    gateways = {**settings.PAYMENT_GATEWAYS, "alipay": config}
    with override_settings(PAYMENT_GATEWAYS=gateways, GATEWAY_READ_TIMEOUT=1.5):
        inside = get_gateway("alipay")
        assert isinstance(inside, AlipayGateway)
        assert inside is not before
        assert inside.gateway_url == "http://elsewhere/gateway.do"
        assert inside.timeout[1] == 1.5
    assert get_gateway("alipay") is before
