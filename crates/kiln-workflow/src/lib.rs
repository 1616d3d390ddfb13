//! kiln-workflow
