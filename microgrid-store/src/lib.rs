//! Storage for `microgrid` (filled by its own issue).
