"""SMS short-number gateway for electricity meter readings."""

__version__ = "0.1.0"
