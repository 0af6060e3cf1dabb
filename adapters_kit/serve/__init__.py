"""``adapters-kit serve``: many run folders behind one HTTP server (FastAPI + uvicorn), sharing base models."""
