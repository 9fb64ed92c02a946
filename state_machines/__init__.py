"""Pure conversation logic: ``step(state, event, ctx) -> Step``. Nothing here performs I/O."""
