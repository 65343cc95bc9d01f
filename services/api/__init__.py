"""The HTTP API (Litestar): `create_app(runtime)`."""

from services.api.app import create_app

__all__ = ["create_app"]
