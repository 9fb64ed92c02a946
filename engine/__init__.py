"""Infrastructure of the ChatNation engine: settings, database, broker, wallet, outbox, API clients."""
