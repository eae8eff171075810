"""HTTP and WebSocket routes of the assist service, one module per area."""
