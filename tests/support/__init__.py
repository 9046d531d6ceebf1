"""Helpers shared by test suites (processes to start, clients to drive them)."""
