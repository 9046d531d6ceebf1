"""Benchmarks: figures, never assertions (``manage.py bench <scenario>``).

Every scenario runs on a scratch database, Redis key prefix and metrics directory of its own
(``shop.management.commands.bench`` makes and drops them) and prints a table: throughput, p50 and
p99 latency, peak RSS, and the ratio to a *floor* measured in the same run — the least work the
same job can be done with (bare SQL, a minimal WSGI app under the same gunicorn), so the ratio
says what our code costs on top of what cannot be avoided.
"""
