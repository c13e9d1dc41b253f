"""DeskPulse: a headless posture agent that publishes to MQTT.

The data flow is capture -> pose -> posture -> tracker -> publisher; `agent.py` wires it.
"""

__version__ = "0.1.0"
