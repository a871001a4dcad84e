"""Operations: health, metrics, the worker's heartbeat and supervision, instance hygiene."""
