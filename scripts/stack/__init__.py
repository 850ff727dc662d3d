"""`make stack`: the monitoring stack from Debian's packages on loopback ports (see docs/stack.md)."""

from scripts.stack.render import FAST, Ports, Timing
from scripts.stack.stack import Stack

__all__ = ["FAST", "Ports", "Stack", "Timing"]
