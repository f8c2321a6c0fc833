//! Import without a registry (added next).
