"""``python -m tenantmig``."""

from .cli import console

console()
