"""Service error details a shopper's page shows (translated when shown, ``gettext(detail)``).

The services speak English to the JSON API; the pages look each detail up in the catalog, and
``makemessages`` finds the catalog entries here.
"""

from django.utils.translation import gettext_noop

SHOPPER_ERROR_DETAILS = [
    gettext_noop("A payment for this order could not be closed yet. Try again shortly."),
    gettext_noop(
        "A previous payment for this order is still open at the gateway. Try again shortly."
    ),
    gettext_noop("An identical order is being created. Retry shortly."),
    gettext_noop("An order needs at least one item."),
    gettext_noop("Please enter a valid e-mail address."),
    gettext_noop("The payment provider refused this payment. Try another way."),
    gettext_noop("This checkout is still being processed."),
    gettext_noop("This order has already been paid."),
    gettext_noop("This order is closed and can no longer be paid."),
]
