//! The query engine: searches over the stores, independent of any API's shapes.
//!
//! - [`traces`]: trace search with summaries and cursor pagination.
//! - [`dependencies`]: the service dependency graph of a time range.
//! - [`partial`]: parts of large traces (depth limit, collapsed subtrees, window around a span).
//! - [`compare`]: structural diff of two traces.
//! - [`red`]: rate, errors and duration per service and operation, in time buckets.
//! - [`columns`]: bulk reading of fast-field columns (dictionaries, interning).
//! - [`query_syntax`]: the Lucene-style query syntax, adapted to each index.
//! - [`verified`]: queries whose matches are checked one by one (phrases without positions).
//! - [`logs`]: log search, volume histogram, tail, fields, trace links.
//! - [`analysis`]: critical path, self time, error path, time per service, clock skew.

pub mod analysis;
pub mod columns;
pub mod compare;
pub mod dependencies;
pub mod fields;
pub mod logs;
pub mod partial;
pub mod query_syntax;
pub mod red;
pub mod traces;
pub mod verified;
