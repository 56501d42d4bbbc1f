"""SMPP 3.4 transport (ESME) on smpplib: see adapters/smpp/adapter.py for the flow."""

from adapters.smpp.adapter import SmppAdapter
from adapters.smpp.reassembly import MemoryPartStore, MessagePart, PartStore

__all__ = ["MemoryPartStore", "MessagePart", "PartStore", "SmppAdapter"]
