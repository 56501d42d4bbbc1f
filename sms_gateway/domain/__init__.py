"""The domain: plain data and pure rules. Imports nothing from the outside world."""
