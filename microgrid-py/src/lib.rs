//! Python bindings for `microgrid` (filled by its own issue).
