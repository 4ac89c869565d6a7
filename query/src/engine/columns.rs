//! Reading fast-field columns of the span index in bulk: dictionary-encoded columns are read
//! through their whole dictionary once per segment (a sequential pass), so each document costs
//! an array lookup instead of a random dictionary access; names are interned as small integers.

use std::collections::HashMap;

use tantivy::columnar::BytesColumn;

/// A dictionary-encoded column with its values loaded.
pub struct Dictionary {
    column: Option<BytesColumn>,
    pub values: Vec<Vec<u8>>,
}

impl Dictionary {
    pub fn load(column: Option<BytesColumn>) -> tantivy::Result<Dictionary> {
        let mut values = Vec::new();
        if let Some(column) = &column {
            values.reserve(column.num_terms());
            let mut stream = column.dictionary().stream()?;
            while stream.advance() {
                values.push(stream.key().to_vec());
            }
        }
        Ok(Dictionary { column, values })
    }

    pub fn first(&self, doc: u32) -> Option<&[u8]> {
        let ord = self.column.as_ref()?.term_ords(doc).next()?;
        self.values.get(ord as usize).map(Vec::as_slice)
    }

    pub fn first_ord(&self, doc: u32) -> Option<usize> {
        Some(self.column.as_ref()?.term_ords(doc).next()? as usize)
    }

    /// The interned id of each dictionary value, by ordinal.
    pub fn intern(&self, interner: &mut Interner) -> Vec<u32> {
        self.values.iter().map(|value| interner.id(value)).collect()
    }
}

/// Names (services, peers) as small integers.
#[derive(Default)]
pub struct Interner {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Interner {
    pub fn id(&mut self, name: &[u8]) -> u32 {
        let name = String::from_utf8_lossy(name);
        if let Some(&id) = self.ids.get(name.as_ref()) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.into_owned(), id);
        id
    }

    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}
