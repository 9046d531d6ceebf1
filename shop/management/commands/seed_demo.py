from typing import Any

from django.core.management.base import BaseCommand
from django.utils.translation import gettext_noop

from shop.models import Product

# Names are stored in English; the pages show them in the shopper's language (locale/).
DEMO_CATALOG = [
    ("TEA-001", gettext_noop("Longjing green tea, 250 g"), 12800, 50),
    ("MUG-002", gettext_noop("Celadon tea mug"), 5900, 30),
    ("POT-003", gettext_noop("Yixing clay teapot"), 39900, 10),
    ("SET-004", gettext_noop("Travel tea set"), 19900, 20),
    ("CUP-005", gettext_noop("Tasting cups, set of 6"), 8800, 5),
]


class Command(BaseCommand):
    help = "Load the demo catalog. Idempotent: running it again changes nothing that exists."

    def handle(self, *args: Any, **options: Any) -> None:
        created = 0
        for sku, name, price, stock in DEMO_CATALOG:
            _, was_created = Product.objects.get_or_create(
                sku=sku,
                defaults={"name": name, "price_amount": price, "currency": "CNY", "stock": stock},
            )
            created += was_created
        existing = len(DEMO_CATALOG) - created
        self.stdout.write(f"demo catalog: {created} product(s) created, {existing} already there")
