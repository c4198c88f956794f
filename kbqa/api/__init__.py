"""The HTTP API: ``create_app()`` builds the FastAPI app (see kbqa/api/app.py)."""
