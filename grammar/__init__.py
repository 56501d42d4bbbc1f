"""The SMS grammar: what subscribers text to the short number, read into domain data.

The only entry point is MessageParser(account_pattern).parse(text) -> ParsedMessage.
"""

from grammar.parser import MessageParser

__all__ = ["MessageParser"]
