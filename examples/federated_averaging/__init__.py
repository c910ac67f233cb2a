"""Federated averaging over node-comm: a coordinator and participants in separate processes.

Run it with ``make example`` (or ``python examples/federated_averaging/run_demo.py --help``).
"""
