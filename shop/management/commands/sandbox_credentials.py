import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print the local test merchant's credentials as JSON (what the shop is configured with)."
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        ali = settings.PAYMENT_GATEWAYS["alipay"]
        wx = settings.PAYMENT_GATEWAYS["wechat"]
        self.stdout.write(
            json.dumps(
                {
                    "alipay": {
                        "app_id": ali["APP_ID"],
                        "seller_id": ali["SELLER_ID"],
                        "app_private_key_pem": ali["APP_PRIVATE_KEY"],
                        "alipay_public_key_pem": ali["ALIPAY_PUBLIC_KEY"],
                        "gateway_url": ali["GATEWAY_URL"],
                    },
                    "wechat": {
                        "appid": wx["APPID"],
                        "mchid": wx["MCHID"],
                        "merchant_private_key_pem": wx["MERCHANT_PRIVATE_KEY"],
                        "merchant_serial_no": wx["MERCHANT_SERIAL_NO"],
                        "apiv3_key": wx["APIV3_KEY"],
                        "platform_public_key_pem": wx["PLATFORM_PUBLIC_KEY"],
                        "platform_public_key_id": wx["PLATFORM_PUBLIC_KEY_ID"],
                        "base_url": wx["BASE_URL"],
                    },
                },
                indent=2,
            )
        )
