"""The REST API: the CRM's door into the engine (docs/api.md). ``app.create_app`` builds it; `chatnation api`
serves it on API_PORT."""
