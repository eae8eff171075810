"""Live agent assist: call sessions, suggestions, alerts and the service."""
