"""node-comm benchmark harness: ``python -m bench`` (``--quick`` for a one-minute smoke run)."""
