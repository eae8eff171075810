"""kefu: agent assist and quality inspection for a power utility's customer-service hotline."""

__version__ = "0.1.0"
