"""The knowledge base: chunking, ingestion, storage and retrieval of an organisation's documents."""
