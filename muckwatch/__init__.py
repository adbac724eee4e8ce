"""muckwatch: real-time telemetry and geofencing for muck trucks (渣土车).

This package is the composition root: the typed batch that travels through the pipeline,
settings, the pipeline wiring, the CLI and the private services used by the demo and tests.
The stages live in the sibling packages ``ingest``, ``geofence``, ``rules``, ``store`` and
``simulator``.
"""

__version__ = "0.1.0"
