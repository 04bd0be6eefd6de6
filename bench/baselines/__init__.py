"""The designs the benchmark suite compares this service against, each a FastAPI app served by
uvicorn with the same request bodies as the service's API (one wrk script drives all)."""
