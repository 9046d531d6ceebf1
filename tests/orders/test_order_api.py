from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client

from orders.models import Order
from shop.models import Product
from tests.conftest import make_product

pytestmark = pytest.mark.django_db


def post_order(client: Client, body: object, key: str | None = None, **extra: str):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(
        "/api/v1/orders/",
        data=json.dumps(body),
        content_type="application/json",
        **headers,
        **extra,
    )


def body(sku: str = "TEA-1", quantity: int = 2, email: str = "a@example.com") -> dict:
    return {"items": [{"sku": sku, "quantity": quantity}], "email": email}


def test_products_api_lists_money_in_minor_units(client: Client, product: Product) -> None:
    answer = client.get("/api/v1/products/").json()
    assert answer == [
        {
            "sku": "TEA-1",
            "name": "Product TEA-1",
            "price": {"amount": 1999, "currency": "CNY"},
            "stock": 100,
        }
    ]


def test_create_order_snapshots_price_reserves_stock_and_gives_a_token(
    client: Client, product: Product
) -> None:
    response = post_order(client, body(quantity=3))
    assert response.status_code == 201
    data = response.json()
    assert data["status"] == "unpaid"
    assert data["total"] == {"amount": 3 * 1999, "currency": "CNY"}
    assert data["id"].startswith("ord_") and len(data["id"]) == 30
    assert data["access_token"]
    product.refresh_from_db()
    assert product.stock == 97
    Product.objects.filter(pk=product.pk).update(price_amount=5000)
    order = Order.objects.get(public_id=data["id"])
    assert order.lines.get().unit_price == 1999


def test_order_is_visible_only_with_its_token(client: Client, product: Product) -> None:
    data = post_order(client, body()).json()
    url = f"/api/v1/orders/{data['id']}/"
    assert client.get(url).status_code == 404
    assert client.get(url, HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    other = post_order(client, body(email="b@example.com", quantity=1)).json()
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {other['access_token']}").status_code == 404
    mine = client.get(url, HTTP_AUTHORIZATION=f"Bearer {data['access_token']}")
    assert mine.status_code == 200
    assert mine.json()["payments"] == [] and mine.json()["refunds"] == []
    assert (
        client.get(
            "/api/v1/orders/1/", HTTP_AUTHORIZATION=f"Bearer {data['access_token']}"
        ).status_code
        == 404
    )


def test_same_idempotency_key_same_body_returns_the_same_order(
    client: Client, product: Product
) -> None:
    key = str(uuid.uuid4())
    first = post_order(client, body(), key)
    second = post_order(client, body(), key)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["access_token"] == second.json()["access_token"]
    assert Order.objects.count() == 1
    product.refresh_from_db()
    assert product.stock == 98


def test_same_idempotency_key_other_body_is_refused(client: Client, product: Product) -> None:
    key = str(uuid.uuid4())
    post_order(client, body(), key)
    response = post_order(client, body(quantity=5), key)
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1


@pytest.mark.parametrize("key", ["", "   ", "k" * 256])
def test_bad_idempotency_keys_are_refused(client: Client, product: Product, key: str) -> None:
    response = post_order(client, body(), key)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"
    assert Order.objects.count() == 0


def test_identical_order_without_key_within_window_returns_the_same_order(
    client: Client, product: Product
) -> None:
    first = post_order(client, body())
    second = post_order(client, body())
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    third = post_order(client, body(quantity=1))
    assert third.status_code == 201 and third.json()["id"] != first.json()["id"]


def test_out_of_stock_is_409_and_changes_nothing(client: Client) -> None:
    make_product("LAST", stock=2)
    response = post_order(client, body("LAST", 3))
    assert response.status_code == 409
    assert response.json()["code"] == "out_of_stock"
    assert Order.objects.count() == 0
    assert Product.objects.get(sku="LAST").stock == 2


def test_multi_line_order_rolls_back_all_stock_if_one_line_fails(client: Client) -> None:
    make_product("A", stock=5)
    make_product("B", stock=1)
    response = post_order(
        client,
        {
            "items": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 2}],
            "email": "a@example.com",
        },
    )
    assert response.status_code == 409
    assert Product.objects.get(sku="A").stock == 5


BAD_BODIES = [
    ("not json", "malformed_json"),
    ("[]", "invalid_request"),
    ("{}", "invalid_request"),
    ('{"items": [], "email": "a@example.com"}', "invalid_request"),
    ('{"items": [{"sku": "TEA-1", "quantity": 0}], "email": "a@example.com"}', "invalid_request"),
    ('{"items": [{"sku": "TEA-1", "quantity": -1}], "email": "a@example.com"}', "invalid_request"),
    (
        '{"items": [{"sku": "TEA-1", "quantity": 100000000000000000000}], "email": "a@example.com"}',
        "invalid_request",
    ),
    (
        '{"items": [{"sku": "TEA-1", "quantity": "two"}], "email": "a@example.com"}',
        "invalid_request",
    ),
    ('{"items": [{"sku": "TEA-1", "quantity": 1.5}], "email": "a@example.com"}', "invalid_request"),
    ('{"items": [{"sku": "TEA-1", "quantity": 1}]}', "invalid_request"),
    ('{"items": [{"sku": "TEA-1", "quantity": 1}], "email": "not-an-email"}', "invalid_request"),
    ('{"items": [{"sku": "TEA-1", "quantity": 1}], "email": 5}', "invalid_request"),
    ('{"items": "TEA-1", "email": "a@example.com"}', "invalid_request"),
    ('{"items": [{"quantity": 1}], "email": "a@example.com"}', "invalid_request"),
    ('{"items": [{"sku": null, "quantity": 1}], "email": "a@example.com"}', "invalid_request"),
    ('{"items": [{"sku": "NOPE", "quantity": 1}], "email": "a@example.com"}', "unknown_sku"),
    (
        '{"items": [{"sku": "TEA-1", "quantity": 60}, {"sku": "TEA-1", "quantity": 60}], "email": "a@example.com"}',
        "invalid_quantity",
    ),
    (
        '{"items": ['
        + ",".join(['{"sku": "TEA-1", "quantity": 1}'] * 51)
        + '], "email": "a@example.com"}',
        "invalid_request",
    ),
    ('"just a string"', "invalid_request"),
    ("null", "invalid_request"),
]


@pytest.mark.parametrize(("raw", "code"), BAD_BODIES)
def test_malformed_order_bodies_get_400_with_a_code_and_create_nothing(
    client: Client, product: Product, raw: str, code: str
) -> None:
    response = client.post("/api/v1/orders/", data=raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code
    assert response.json()["detail"]
    assert Order.objects.count() == 0
    product.refresh_from_db()
    assert product.stock == 100


def test_wrong_content_type_and_method_are_4xx(client: Client, product: Product) -> None:
    assert (
        client.post(
            "/api/v1/orders/", data="a=b", content_type="application/x-www-form-urlencoded"
        ).status_code
        == 415
    )
    assert client.get("/api/v1/orders/").status_code == 405
    assert client.post(
        "/api/v1/orders/", data=b"{" * 70000, content_type="application/json"
    ).status_code in (400, 413)


def test_cancel_unpaid_order_releases_stock_and_is_idempotent(
    client: Client, product: Product
) -> None:
    data = post_order(client, body(quantity=4)).json()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {data['access_token']}"}
    first = client.post(f"/api/v1/orders/{data['id']}/cancel", **auth)
    assert first.status_code == 200 and first.json()["status"] == "closed"
    second = client.post(f"/api/v1/orders/{data['id']}/cancel", **auth)
    assert second.status_code == 200
    product.refresh_from_db()
    assert product.stock == 100
    assert client.post(f"/api/v1/orders/{data['id']}/cancel").status_code == 404


def test_openapi_schema_is_served(client: Client) -> None:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/v1/orders/" in response.content
