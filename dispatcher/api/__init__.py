"""The REST API (FastAPI): validate, persist, ring doorbells. Never calls a provider."""
