"""``python -m tenantmig``."""

import sys

from .cli import main

sys.exit(main())
