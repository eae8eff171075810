"""The live assist HTTP/WebSocket service (`kefu serve`)."""
