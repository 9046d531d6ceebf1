"""The sandbox payment gateway: a separate process that speaks Alipay and WeChat Pay API v3.

Run it with ``python manage.py run_sandbox --port 8001 [--host 127.0.0.1] [--base-url URL]``.
It is a plain ``ThreadingHTTPServer`` with its state in memory (``state.Ledger`` behind a lock);
it uses no database and no Django request machinery, so it starts in a second and forgets
everything on restart or ``POST /sandbox/reset``. Keys come from
``shop.credentials.local_credentials()``: it signs as the gateways and verifies as the merchant.

Modules: ``server`` (routes), ``alipay`` and ``wechat`` (the protocols), ``notifier`` (async
deliveries and retries), ``cashier`` (the shopper's page), ``control`` (the harness API),
``state`` (trades and refunds), ``faults``, ``bills`` (statements), ``buyer`` (paying).

Environment:

- ``SANDBOX_NOTIFY_SCHEDULE``: comma-separated seconds between notify retries, replacing both
  real schedules (Alipay 4m,10m,10m,1h,2h,6h,15h; WeChat 15s,15s,30s,3m,10m,20m,30m,30m,30m,
  60m,3h,3h,3h,6h,6h). Empty means no retries.
- ``SANDBOX_SEED``: seeds the fault RNG (re-seeded on reset). Draws made by background threads
  interleave with request threads, so replay is exact only for sequential harnesses.
- ``SANDBOX_REFUND_SECONDS`` (default 1): how long a WeChat refund stays PROCESSING.
- ``SANDBOX_ALIPAY_REFUND_NOTIFY=1``: also send Alipay's refund notifies (off by default;
  Alipay refunds complete synchronously).
- ``SANDBOX_LOG_LEVEL`` (default INFO).

Deliberate simplifications, each a place the real gateways are harsher:

- A day's bill is available at once (real ones: the next morning); future dates are refused.
- An unscanned Alipay precreate trade exists from the start (the real one may answer
  ``ACQ.TRADE_NOT_EXIST`` until the QR code is scanned).
- Alipay sends no TRADE_CLOSED notify when an unpaid trade closes or expires.
- Closing an already-closed trade is answered as a success on both channels.
"""
