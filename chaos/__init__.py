"""Chaos runs: simulated shoppers against a real stack while faults are injected, then the
invariants of product.md are checked against the sandbox ledger (the ground truth).

Everything here talks to the shop and the sandbox over HTTP only, on 127.0.0.1, so the checks
see what an integrator or a shopper would see. Entry point: ``manage.py chaos``.
"""
