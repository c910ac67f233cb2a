"""``python -m node_comm``: the ``node-comm`` command."""

import sys

from .cli import main

sys.exit(main())
