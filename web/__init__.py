"""The DeskPulse dashboard: a thin Flask app serving a page that speaks MQTT itself.

Flask serves the login, the page, its static assets, `/config.json` (where the broker is;
never a password) and `/healthz`, served by waitress (`httpd.py`); `auth.py` decides who is
logged in. It never relays posture data: the page subscribes to the broker with mqtt.js over
the WebSocket relay (deskpulse/wsrelay.py), which admits only logged-in pages.
"""

from .app import create_app

__all__ = ["create_app"]
