"""The control API (FastAPI): load generation across the fleet and scaling, token-protected, with an
OpenAPI description. ``shaper_pipelines.api.app:app`` is the ASGI application; see app.py."""
