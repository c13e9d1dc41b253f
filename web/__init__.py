"""The DeskPulse dashboard: a thin Flask app serving a page that speaks MQTT itself.

Flask serves the page, its static assets, `/config.json` (where the broker is and the
browser's read-only credentials) and `/healthz`. It never relays posture data: the page
subscribes to the broker with mqtt.js over the WebSocket relay (deskpulse/wsrelay.py).
"""

from .app import create_app

__all__ = ["create_app"]
