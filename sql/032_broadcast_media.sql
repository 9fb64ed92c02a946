-- Media broadcasts (issue 15): an image, a video or a document, by https link or uploaded media id
-- (broadcasts.media_url, the seed's column), its caption the broadcast's text. Free-form like a text: sent only
-- inside a contact's 24-hour window, a template for the others.
ALTER TABLE broadcasts
    ADD COLUMN media_type VARCHAR(10) CHECK (media_type IN ('image', 'video', 'document')),
    ADD CONSTRAINT broadcasts_media CHECK (media_type IS NULL OR media_url IS NOT NULL);
