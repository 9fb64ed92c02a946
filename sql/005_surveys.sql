-- Phase 3, module II: surveys. `surveys.questions` (JSONB) is the source of truth the bot asks from;
-- `questions` / `question_options` are its relational projection for reporting, written on save/import.

CREATE TABLE surveys (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    title VARCHAR(255) NOT NULL,
    description TEXT,
    questions JSONB NOT NULL DEFAULT '[]',
    settings JSONB DEFAULT '{}',               -- {"allow_multiple_responses": false, ...}
    max_responses INTEGER CHECK (max_responses IS NULL OR max_responses > 0),
    response_count INTEGER DEFAULT 0,
    starts_at TIMESTAMPTZ,
    ends_at TIMESTAMPTZ,
    status VARCHAR(20) DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'closed', 'archived')),
    published_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    CONSTRAINT survey_capacity CHECK (max_responses IS NULL OR response_count <= max_responses)
);
CREATE INDEX idx_surveys_org ON surveys(organization_id);
CREATE INDEX idx_surveys_status ON surveys(status);
SELECT tenant_table('surveys');

CREATE TABLE questions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    survey_id UUID NOT NULL REFERENCES surveys(id) ON DELETE CASCADE,
    key VARCHAR(50) NOT NULL,                 -- the question's id inside surveys.questions
    position INTEGER NOT NULL,
    kind VARCHAR(20) NOT NULL,
    text TEXT NOT NULL,
    required BOOLEAN NOT NULL DEFAULT TRUE,
    config JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(survey_id, key)
);
SELECT tenant_table('questions');

CREATE TABLE question_options (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    question_id UUID NOT NULL REFERENCES questions(id) ON DELETE CASCADE,
    key VARCHAR(50) NOT NULL,
    text TEXT NOT NULL,
    position INTEGER NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(question_id, key)
);
SELECT tenant_table('question_options');

CREATE TABLE survey_responses (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    survey_id UUID NOT NULL REFERENCES surveys(id),
    contact_id UUID NOT NULL REFERENCES contacts(id),
    answers JSONB NOT NULL DEFAULT '{}',
    status VARCHAR(20) DEFAULT 'in_progress' CHECK (status IN ('in_progress', 'completed', 'abandoned')),
    current_question INTEGER DEFAULT 0,       -- how many questions were answered along the path
    current_question_key VARCHAR(50),         -- the question being asked (branching makes position ambiguous)
    started_at TIMESTAMPTZ DEFAULT NOW(),
    completed_at TIMESTAMPTZ,
    last_answer_at TIMESTAMPTZ,
    sentiment_score DECIMAL(3,2),
    ai_summary TEXT,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_survey_responses_survey ON survey_responses(survey_id);
CREATE INDEX idx_survey_responses_contact ON survey_responses(contact_id);
-- One response in progress per contact and survey, whatever races.
CREATE UNIQUE INDEX uq_survey_responses_open ON survey_responses(survey_id, contact_id) WHERE status = 'in_progress';
SELECT tenant_table('survey_responses');

CREATE TABLE response_items (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id),
    response_id UUID NOT NULL REFERENCES survey_responses(id) ON DELETE CASCADE,
    question_key VARCHAR(50) NOT NULL,
    value JSONB NOT NULL,
    answered_at TIMESTAMPTZ DEFAULT NOW(),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(response_id, question_key)
);
SELECT tenant_table('response_items');
