//! The query engine: searches over the stores, independent of any API's shapes.
//!
//! - [`traces`]: trace search with summaries and cursor pagination.
//! - [`analysis`]: critical path, self time, error path, time per service, clock skew.

pub mod analysis;
pub mod traces;
