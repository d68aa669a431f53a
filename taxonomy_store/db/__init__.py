"""SQL layer: models, engine, migrations. Parts reach it through the backend (`backend.database`)."""
