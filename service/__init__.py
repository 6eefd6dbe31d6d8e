"""ffp service: live cameras -> batched future-frame prediction -> alerts -> events (REST + WebSocket)."""
