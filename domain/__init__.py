"""The shared vocabulary of muckwatch, at the bottom of the import graph: fix batches and
rejects (``batches``), the city model and its bundle loader (``city``, reading fences with
``geojson`` in the coordinate systems of ``coords``), violation and trip events
(``events``), wire format v1 as publishers write it (``wire``) and the settings
(``settings``, loaded and validated by ``config``). It imports no other package of the
project; every other package may import it (docs/architecture.md)."""
