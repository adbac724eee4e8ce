"""The HTTP API (``muckwatch serve``, docs/api.md): people acting on violations — officers
review them, companies appeal, cases are dispatched and closed, and the public and the
transport association read their share. Built on FastAPI (OpenAPI for free, pydantic
validation of every body) served by uvicorn; the SQL lives in ``store``."""
