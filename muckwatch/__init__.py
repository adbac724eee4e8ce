"""muckwatch: real-time telemetry and geofencing for muck trucks (渣土车).

This package is the composition root and nothing imports it: the pipeline wiring
(``pipeline.py``, its stages in ``stages.py``), the ingest service loop, the hand-over, the
CLI (``cli/``), the demo and the report. The shared vocabulary lives in ``domain``; the
stages' logic in ``ingest``, ``geofence``, ``rules``, ``store`` and ``alerts``; terminals are
``gateway`` and ``simulator``; the private development services in ``devservices``
(docs/architecture.md).
"""

__version__ = "0.1.0"
