"""Sparkplug B 3.0 edge node: payload schema, encoding, and the session state machine."""
