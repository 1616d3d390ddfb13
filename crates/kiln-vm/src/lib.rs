//! kiln-vm
