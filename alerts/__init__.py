"""Enforcement alerts: a transactional outbox of violation events and a delivery worker that
POSTs them as signed Standard Webhooks, retried for days, never lost."""
