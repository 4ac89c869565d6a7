//! Opening a tantivy index the way every Sightline store wants it: memory-mapped, zstd doc
//! store, one writer with a bounded memory budget, readers reloaded by the indexer after each
//! commit, and a merge policy that also merges segments that retention has half emptied.

use std::path::Path;

use tantivy::directory::MmapDirectory;
use tantivy::indexer::LogMergePolicy;
use tantivy::schema::Schema;
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy};
use tracing::info;

/// Tuning of an index writer.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Memory the index writer may buffer before it flushes a segment, over all its threads.
    pub writer_memory_bytes: usize,
    /// Indexing threads of the index writer.
    pub writer_threads: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            writer_memory_bytes: 64 << 20,
            writer_threads: 2,
        }
    }
}

/// How an index compresses its stored documents, chosen per store by how it is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DocStore {
    /// zstd level of each block.
    pub zstd_level: i32,
    /// Uncompressed bytes of documents per block: larger blocks compress better (zstd finds
    /// more of what repeats between documents) and cost more to read one document from.
    pub block_bytes: usize,
    /// Decompressed blocks a searcher keeps per segment.
    pub cache_blocks: usize,
}

impl DocStore {
    /// Spans are read a trace at a time, often: small, quickly compressed blocks.
    pub const SPANS: DocStore = DocStore {
        zstd_level: 3,
        block_bytes: 64 * 1024,
        cache_blocks: 100,
    };
    /// Log records are written far more than read, and read as runs of neighbours (the newest
    /// lines, a correlation id's lines): Quickwit's choice for its doc store, zstd 8 over 1 MB
    /// blocks, about a fifth smaller than zstd 3 over 64 KiB for 1 KB lines. Few blocks are
    /// cached, as each takes 1 MB decompressed.
    pub const LOGS: DocStore = DocStore {
        zstd_level: 8,
        block_bytes: 1_000_000,
        cache_blocks: 8,
    };
}

/// An existing index whose fields are `schema`'s, by name and in order, with other options
/// (e.g. a field indexed with positions by an earlier version): it is used as it is, since
/// documents of the current schema fit it.
fn existing_with_other_options(
    directory: &MmapDirectory,
    schema: &Schema,
) -> tantivy::Result<Option<Index>> {
    if !Index::exists(directory)? {
        return Ok(None);
    }
    let index = Index::open(directory.clone())?;
    let existing = index.schema();
    if existing == *schema {
        return Ok(None);
    }
    let names = |schema: &Schema| -> Vec<String> {
        schema
            .fields()
            .map(|(_, entry)| entry.name().to_owned())
            .collect()
    };
    if names(&existing) != names(schema) {
        return Err(tantivy::TantivyError::SchemaError(
            "an index exists with other fields than this version writes".into(),
        ));
    }
    Ok(Some(index))
}

/// Opens (or creates) the index in `dir` with `schema`, returning it with its reader and its one
/// writer.
pub(crate) fn open(
    dir: &Path,
    schema: Schema,
    doc_store: DocStore,
    settings: &StoreSettings,
) -> tantivy::Result<(Index, IndexReader, IndexWriter)> {
    std::fs::create_dir_all(dir)?;
    // Taken when the index is created: an existing index keeps the settings it was created
    // with (each segment's store records its own compression).
    let index_settings = IndexSettings {
        docstore_compression: Compressor::Zstd(ZstdCompressor {
            compression_level: Some(doc_store.zstd_level),
        }),
        docstore_blocksize: doc_store.block_bytes,
        ..IndexSettings::default()
    };
    let directory = MmapDirectory::open(dir)?;
    let index = match existing_with_other_options(&directory, &schema)? {
        Some(index) => {
            info!(dir = %dir.display(), "index written with other field options by an earlier version: opened as it is");
            index
        }
        None => Index::builder()
            .schema(schema)
            .settings(index_settings)
            .open_or_create(directory)?,
    };
    // tantivy requires at least 15 MB of budget per thread.
    let threads = settings.writer_threads.max(1);
    let memory = settings.writer_memory_bytes.max(threads * (16 << 20));
    let writer: IndexWriter = index.writer_with_num_threads(threads, memory)?;
    // A stop in the middle of a merge leaves the segment it was writing; tantivy would only
    // delete it after its next commit or merge.
    let collected = writer.garbage_collect_files().wait()?;
    if !collected.deleted_files.is_empty() {
        info!(dir = %dir.display(), files = collected.deleted_files.len(), "deleted files no commit refers to (a merge cut short)");
    }
    let mut merge_policy = LogMergePolicy::default();
    merge_policy.set_del_docs_ratio_before_merge(0.5);
    writer.set_merge_policy(Box::new(merge_policy));
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .doc_store_cache_num_blocks(doc_store.cache_blocks)
        .try_into()?;
    Ok((index, reader, writer))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tantivy::schema::STORED;

    use super::*;

    #[test]
    fn opening_deletes_files_that_no_commit_refers_to() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = Schema::builder();
        builder.add_u64_field("n", STORED);
        let schema = builder.build();
        let settings = StoreSettings::default();
        let (index, _, writer) =
            open(dir.path(), schema.clone(), DocStore::SPANS, &settings).unwrap();
        // What a merge cut short leaves: a segment file written through the index's directory
        // (which records it as its own) that no commit names.
        let orphan = std::path::Path::new("00000000000000000000000000000001.store");
        let mut file =
            tantivy::directory::Directory::open_write(index.directory(), orphan).unwrap();
        file.write_all(b"half a segment").unwrap();
        tantivy::directory::TerminatingWrite::terminate(file).unwrap();
        drop(writer);
        drop(index);
        assert!(dir.path().join(orphan).exists());

        open(dir.path(), schema, DocStore::SPANS, &settings).unwrap();
        assert!(!dir.path().join(orphan).exists());
    }
}
