//! The query engine: searches over the stores, independent of any API's shapes.
//!
//! - [`traces`]: trace search with summaries and cursor pagination.
//! - [`dependencies`]: the service dependency graph of a time range.
//! - [`analysis`]: critical path, self time, error path, time per service, clock skew.

pub mod analysis;
pub mod dependencies;
pub mod traces;
