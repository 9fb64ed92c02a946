-- Phase 5: knowledge base for answers (RAG).

CREATE TABLE knowledge_bases (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    name VARCHAR(255) NOT NULL,
    description TEXT,
    is_active BOOLEAN DEFAULT TRUE,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(organization_id, name)
);
SELECT tenant_table('knowledge_bases');

CREATE TABLE documents (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    knowledge_base_id UUID NOT NULL REFERENCES knowledge_bases(id),
    title VARCHAR(255),
    content TEXT NOT NULL,
    source_url TEXT,
    content_hash VARCHAR(64),
    status VARCHAR(20) DEFAULT 'pending' CHECK (status IN ('pending', 'processing', 'ready', 'failed')),
    error TEXT,
    chunk_count INTEGER DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_documents_kb ON documents(knowledge_base_id);
SELECT tenant_table('documents');

CREATE TABLE embeddings (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id UUID NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    organization_id UUID NOT NULL REFERENCES organizations(id),
    chunk_index INTEGER NOT NULL DEFAULT 0,
    content TEXT NOT NULL,
    embedding vector(1536),
    -- Full-text fallback when no embedding model is configured ('simple' config: works for Swahili too).
    content_tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED,
    metadata JSONB,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_embeddings_org ON embeddings(organization_id);
CREATE INDEX idx_embeddings_document ON embeddings(document_id, chunk_index);
-- HNSW instead of the design's ivfflat: ivfflat computes its lists from the rows present when it is
-- built, and on an empty table that gives a useless index; HNSW needs no training and stays accurate.
CREATE INDEX idx_embeddings_vector ON embeddings USING hnsw (embedding vector_cosine_ops);
CREATE INDEX idx_embeddings_tsv ON embeddings USING gin(content_tsv);
SELECT tenant_table('embeddings');
