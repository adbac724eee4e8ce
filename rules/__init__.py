"""Per-vehicle rule state machines: classified fixes in, violation events out. No I/O."""
