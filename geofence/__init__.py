"""Geometry, coordinate systems and spatial indexes: arrays in, arrays out.

Knows nothing of trucks, permits, MQTT or SQL (docs/architecture: boundaries).
"""
