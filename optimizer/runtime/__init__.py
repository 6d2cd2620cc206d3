"""Process wiring: the shared services a web or worker process builds once, telemetry, and start-up checks."""
