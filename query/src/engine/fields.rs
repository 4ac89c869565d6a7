//! The fields a query can name, with their most frequent values, for autocompletion: read from
//! each segment's field metadata (JSON paths included; read once per segment), top values from
//! tantivy's terms aggregations over the matching documents. Shared by log fields and span
//! attributes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use serde_json::{json, Value};
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::AggregationCollector;
use tantivy::index::{FieldMetadata, SegmentId};
use tantivy::query::Query;
use tantivy::schema::Type;
use tantivy::Searcher;

/// A field that queries can name, with its most frequent values.
#[derive(Debug, Clone)]
pub struct FieldInfo {
    pub name: String,
    pub kind: &'static str,
    pub top_values: Vec<(Value, u64)>,
}

impl FieldInfo {
    /// `{"name", "type", "topValues": [{"value", "count"}]}`, as the API answers it.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.kind,
            "topValues": self.top_values.iter()
                .map(|(value, count)| json!({"value": value, "count": count}))
                .collect::<Vec<_>>(),
        })
    }
}

/// Fields whose top values are computed, at most.
const MAX_FIELDS_WITH_VALUES: usize = 64;

/// How one index's fields are listed.
pub struct Catalog<'a> {
    /// The name a query uses for an index field (`attributes.http.method` → `http.method`), or
    /// `None` for a field not listed.
    pub public_name: &'a dyn Fn(&str) -> Option<String>,
    /// Index fields listed without values (their values are ids, unique per record), listed
    /// when indexed even if they have no column.
    pub without_values: &'a [&'a str],
    /// The index's segments' fields, as far as they are known.
    pub segment_fields: &'a SegmentFields,
}

/// The fields of each segment of an index, read once: listing a segment's JSON paths reads its
/// whole term dictionary (32 ms for the segments of 300,000 log lines), and a segment does not
/// change. Segments no longer searched are forgotten.
#[derive(Default)]
pub struct SegmentFields(Mutex<HashMap<SegmentId, Arc<Vec<FieldMetadata>>>>);

impl SegmentFields {
    fn of(&self, searcher: &Searcher) -> tantivy::Result<Vec<Arc<Vec<FieldMetadata>>>> {
        let segments = searcher.segment_readers();
        let mut known = self.0.lock();
        known.retain(|id, _| segments.iter().any(|segment| segment.segment_id() == *id));
        segments
            .iter()
            .map(|segment| {
                if let Some(fields) = known.get(&segment.segment_id()) {
                    return Ok(fields.clone());
                }
                let fields = Arc::new(segment.fields_metadata()?);
                known.insert(segment.segment_id(), fields.clone());
                Ok(fields)
            })
            .collect()
    }
}

/// The fast fields (and the indexed fields listed without values) of the documents matching
/// `query`, with up to `values_per_field` top values of each, in the order of their index
/// names. `every_match` says whether `query` matches every record the list is for, rather than
/// a sample of them: only then is a field that none of its documents has left out.
pub fn list(
    searcher: &Searcher,
    query: &dyn Query,
    every_match: bool,
    values_per_field: usize,
    catalog: &Catalog,
) -> tantivy::Result<Vec<FieldInfo>> {
    // Index field name → (public name, kind).
    let mut names: BTreeMap<String, (String, &'static str)> = BTreeMap::new();
    for segment in catalog.segment_fields.of(searcher)? {
        for meta in segment.iter().cloned() {
            let kind = match meta.typ {
                Type::Str => "string",
                Type::U64 | Type::I64 | Type::F64 => "number",
                Type::Bool => "bool",
                _ => continue,
            };
            // Values are counted from columns; a field listed without values only needs to
            // be searchable.
            let without_values = catalog.without_values.contains(&meta.field_name.as_str());
            if meta.fast_size.is_none() && !(without_values && meta.term_dictionary_size.is_some())
            {
                continue;
            }
            if let Some(public) = (catalog.public_name)(&meta.field_name) {
                names.entry(meta.field_name).or_insert((public, kind));
            }
        }
    }
    let with_values: Vec<String> = names
        .keys()
        .filter(|name| !catalog.without_values.contains(&name.as_str()))
        .take(MAX_FIELDS_WITH_VALUES)
        .cloned()
        .collect();
    let mut top: BTreeMap<String, Vec<(Value, u64)>> = BTreeMap::new();
    if !with_values.is_empty() {
        let request: serde_json::Map<String, Value> = with_values
            .iter()
            .enumerate()
            .map(|(i, name)| {
                (
                    format!("f{i}"),
                    json!({"terms": {"field": name, "size": values_per_field.max(1)}}),
                )
            })
            .collect();
        let aggregations: Aggregations = serde_json::from_value(Value::Object(request))
            .map_err(|err| tantivy::TantivyError::InvalidArgument(err.to_string()))?;
        let collector = AggregationCollector::from_aggs(aggregations, Default::default());
        let results = serde_json::to_value(searcher.search(query, &collector)?)
            .map_err(|err| tantivy::TantivyError::InternalError(err.to_string()))?;
        for (i, name) in with_values.iter().enumerate() {
            let values = results[format!("f{i}")]["buckets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| (b["key"].clone(), b["doc_count"].as_u64().unwrap_or(0)))
                .collect();
            top.insert(name.clone(), values);
        }
    }
    // A field whose values were counted but that no matching document has is left out, unless
    // the documents are a sample: the segments' metadata lists every field of every document,
    // matching or not.
    names.retain(|name, _| {
        !every_match
            || top
                .get(name.as_str())
                .is_none_or(|values| !values.is_empty())
    });
    Ok(names
        .iter()
        .map(|(name, (public, kind))| FieldInfo {
            name: public.clone(),
            kind,
            top_values: top.remove(name).unwrap_or_default(),
        })
        .collect())
}
