"""Chaos runs: simulated shoppers against a real stack while faults are injected, then the
invariants of product.md are checked against the sandbox ledger (the ground truth).

Run it with ``python manage.py chaos`` (``--help`` lists the options), for example::

    python manage.py chaos --shoppers 16 --duration 420 --faults all --process-faults all

By default the run starts a private stack from a snapshot of the working tree — its own
database (created, migrated and dropped), its own Redis key prefix on Redis database 14 and free
loopback ports — so a developer's stack and the test suite are never touched. ``--use-running``
drives a stack someone else runs instead (no process faults then; healing is judged by this
process's timing settings). The seed printed at the end replays every shopper's choices and the
fault timeline (not the timing).

Parts: ``clients`` (HTTP), ``stack`` (processes, database, Redis), ``faults`` (sandbox fault
rates, process-fault timeline), ``shoppers``, ``observe`` (what the run saw), ``invariants``
(the pure checker), ``report``, ``runner`` (one run, start to end). Everything talks to the
shop and the sandbox over HTTP on 127.0.0.1 only; the run's own database is read only to count
gateway trouble for the report.
"""
