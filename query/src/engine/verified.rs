//! A query whose matches are checked one by one: the documents of an inner query, kept when a
//! per-segment test passes. Phrases on a field indexed without positions are built this way
//! (every word of the phrase, an inner conjunction of terms, then the phrase itself checked on
//! the stored document), and so are ids indexed by a prefix (the prefix's term, then the whole
//! id checked on the stored document).

use std::fmt;
use std::sync::Arc;

use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED};

/// A test of the documents of one segment.
pub type DocCheck = Box<dyn FnMut(DocId) -> bool + Send>;

/// Makes the test of a segment's documents for the phrase `words` with `slop`.
pub type PhraseCheck = fn(&SegmentReader, &[String], u32) -> tantivy::Result<DocCheck>;

/// Makes the test of a segment's documents for one of `ids` (or, with `prefix`, an id starting
/// with one of them) in the id field `field`.
pub type IdCheck = fn(&SegmentReader, &str, &[String], bool) -> tantivy::Result<DocCheck>;

/// Makes the test of a segment's documents.
pub type SegmentCheck = Arc<dyn Fn(&SegmentReader) -> tantivy::Result<DocCheck> + Send + Sync>;

/// The documents of `inner` that pass `check`.
pub struct Verified {
    pub inner: Box<dyn Query>,
    pub check: SegmentCheck,
    /// What is checked, for `Debug`.
    pub checks: String,
}

impl Clone for Verified {
    fn clone(&self) -> Self {
        Verified {
            inner: self.inner.box_clone(),
            check: self.check.clone(),
            checks: self.checks.clone(),
        }
    }
}

impl fmt::Debug for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("inner", &self.inner)
            .field("checks", &self.checks)
            .finish()
    }
}

impl Query for Verified {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(VerifiedWeight {
            inner: self.inner.weight(scoring)?,
            check: self.check.clone(),
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a tantivy::Term, bool)) {
        self.inner.query_terms(visitor);
    }
}

struct VerifiedWeight {
    inner: Box<dyn Weight>,
    check: SegmentCheck,
}

impl Weight for VerifiedWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let inner = self.inner.scorer(reader, boost)?;
        let check = (self.check)(reader)?;
        Ok(Box::new(Checked::new(inner, check)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.inner.explain(reader, doc)
    }
}

/// The documents of a scorer that pass a test.
struct Checked {
    inner: Box<dyn Scorer>,
    check: DocCheck,
}

impl Checked {
    fn new(inner: Box<dyn Scorer>, check: DocCheck) -> Checked {
        let mut checked = Checked { inner, check };
        let doc = checked.inner.doc();
        if doc != TERMINATED && !(checked.check)(doc) {
            checked.advance();
        }
        checked
    }
}

impl DocSet for Checked {
    fn advance(&mut self) -> DocId {
        loop {
            let doc = self.inner.advance();
            if doc == TERMINATED || (self.check)(doc) {
                return doc;
            }
        }
    }

    fn seek(&mut self, target: DocId) -> DocId {
        let doc = self.inner.seek(target);
        if doc == TERMINATED || (self.check)(doc) {
            doc
        } else {
            self.advance()
        }
    }

    fn doc(&self) -> DocId {
        self.inner.doc()
    }

    fn size_hint(&self) -> u32 {
        self.inner.size_hint()
    }

    /// Each document costs a read of its stored copy: in an intersection, the other clauses
    /// go first and this one only checks what they all let through.
    fn cost(&self) -> u64 {
        self.inner.cost().saturating_mul(1_000)
    }
}

impl Scorer for Checked {
    fn score(&mut self) -> Score {
        self.inner.score()
    }
}
