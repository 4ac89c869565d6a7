//! The query engine: searches over the stores, independent of any API's shapes.
//!
//! - [`traces`]: trace search with summaries and cursor pagination.

pub mod traces;
