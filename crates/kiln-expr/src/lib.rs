//! kiln-expr
