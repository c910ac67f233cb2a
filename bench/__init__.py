"""node-comm benchmark harness: ``python -m bench`` (``--quick`` for a one-minute smoke run)."""

import os as _os

# grpc's C core logs harmless GOAWAY notices at shutdown; keep the table readable.
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
