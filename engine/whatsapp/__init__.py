"""WhatsApp Cloud API wire formats: webhook envelopes in (``webhook``), send requests and results out (``outbound``)."""
