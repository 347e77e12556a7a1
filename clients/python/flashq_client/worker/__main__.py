"""``python -m flashq_client.worker``: see ``cli``."""

import sys

from .cli import main

sys.exit(main())
