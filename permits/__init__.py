"""Permits (issue #22, 出土申报 → 核准): what is checked before an officer may approve a
company's application — pure geometry and rules over the city's fences and vehicles, no SQL
(the database side is ``store.permits``, the life cycle docs/permits.md)."""
