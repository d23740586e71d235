//! shared-db
