"""The web adapter: an aiohttp page + JSON API + live-listening WebSocket over engine.service."""
