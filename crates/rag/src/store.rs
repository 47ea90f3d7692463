//! One corpus on disk: `<corpora_dir>/<name>.sqlite` (WAL) with its
//! documents, chunks, an FTS5 index over the chunks and their vectors
//! (f32 little-endian, with the model that made them), plus the vectors
//! in memory for brute-force search. Blocking: call from blocking threads.
//!
//! Reindexing (another embedding model, or the same one again) builds a
//! second set of vectors, `vectors_next`, beside the one queries use, a
//! transaction per batch, so an interrupted reindex resumes where it
//! stopped. Once every chunk has a new vector, one transaction swaps the
//! tables and the corpus's model; until then queries never see the new
//! vectors.
//!
//! Locks, always taken in this order: `inserting`, then `vectors`, then
//! `conn`; a `Vectors` snapshot's own lock only with none of them or
//! after `vectors`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};
use serde_json::Value;

use crate::chunk::Chunk;
use crate::error::RagError;
use crate::fuse::VectorIndex;

/// Chunks one corpus may hold: its vectors live in memory (200,000 ×
/// 384 dimensions is about 300 MB).
pub const MAX_CORPUS_CHUNKS: usize = 200_000;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS corpus_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    doc_cid TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    language TEXT NOT NULL,
    media TEXT NOT NULL,
    metadata TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    event_id TEXT,
    ingested_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    doc_id INTEGER NOT NULL REFERENCES documents(id),
    ord INTEGER NOT NULL,
    page INTEGER,
    text TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    UNIQUE (doc_id, ord)
);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunks', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
);
";

/// The columns of `vectors`, which queries use, and of `vectors_next`,
/// which a reindex fills: the same, so that swapping them is a rename.
const VECTOR_COLUMNS: &str = "(
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id),
    model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vec BLOB NOT NULL
)";

/// Which documents a query may return (Contract §4.4 `filter`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub language: Option<String>,
    pub min_year: Option<i64>,
    pub max_year: Option<i64>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// A `WHERE` clause over `documents` and its parameters.
    fn clause(&self) -> (String, Vec<rusqlite::types::Value>) {
        use rusqlite::types::Value as Sql;
        let mut terms = vec!["1".to_owned()];
        let mut values = Vec::new();
        if let Some(language) = &self.language {
            terms.push("language = ?".into());
            values.push(Sql::Text(language.clone()));
        }
        let year = "CAST(json_extract(metadata, '$.year') AS INTEGER)";
        if let Some(min) = self.min_year {
            terms.push(format!("{year} >= ?"));
            values.push(Sql::Integer(min));
        }
        if let Some(max) = self.max_year {
            terms.push(format!("{year} <= ?"));
            values.push(Sql::Integer(max));
        }
        (terms.join(" AND "), values)
    }
}

/// A document as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRecord {
    pub chunks: usize,
    pub tokens: usize,
    pub event_id: Option<String>,
    pub model: Option<String>,
}

/// A document to store.
pub struct NewDocument<'a> {
    pub doc_cid: &'a str,
    pub title: &'a str,
    pub language: &'a str,
    pub media: &'a str,
    pub metadata: &'a Value,
}

/// One retrieved chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: i64,
    pub text: String,
    pub doc_cid: String,
    pub doc_title: String,
    pub page: Option<u32>,
    pub ord: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub docs: u64,
    pub chunks: u64,
    pub size_bytes: u64,
    pub language_majority: Option<String>,
}

/// What a completed reindex changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swapped {
    pub model_before: String,
    pub dim: usize,
    pub chunks: usize,
}

/// The vectors of one model in memory. A query takes this snapshot,
/// embeds its text with `model` and ranks against it, so a reindex that
/// swaps in another model meanwhile can never pair a query vector with
/// vectors of another model.
pub struct Vectors {
    pub model: String,
    index: RwLock<VectorIndex>,
}

impl Vectors {
    pub fn len(&self) -> usize {
        self.index.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Corpus {
    pub name: String,
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Loaded on the first vector search, kept in step by inserts, and
    /// dropped when a reindex swaps in new vectors.
    vectors: Mutex<Option<Arc<Vectors>>>,
    /// Makes an insert and its push into the loaded vectors one step, so
    /// pushes come in the order of the rows (see `VectorIndex::push`).
    inserting: Mutex<()>,
}

pub fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sqlite"))
}

impl Corpus {
    /// Open corpus `name` in `dir`; create it when `create`, else `None`
    /// when it does not exist.
    pub fn open(dir: &Path, name: &str, create: bool) -> Result<Option<Corpus>, RagError> {
        let path = path_of(dir, name);
        if !create && !path.is_file() {
            return Ok(None);
        }
        std::fs::create_dir_all(dir).map_err(|source| RagError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let db = |source| RagError::Db {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS vectors {VECTOR_COLUMNS};
             CREATE TABLE IF NOT EXISTS vectors_next {VECTOR_COLUMNS};"
        ))
        .map_err(db)?;
        Ok(Some(Corpus {
            name: name.to_owned(),
            path,
            conn: Mutex::new(conn),
            vectors: Mutex::new(None),
            inserting: Mutex::new(()),
        }))
    }

    fn db(&self, source: rusqlite::Error) -> RagError {
        RagError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// The embedding model this corpus's vectors come from, and their
    /// dimension; `None` before the first document.
    pub fn model(&self) -> Result<Option<(String, usize)>, RagError> {
        let conn = self.conn.lock();
        model_of(&conn).map_err(|e| self.db(e))
    }

    pub fn document(&self, doc_cid: &str) -> Result<Option<DocRecord>, RagError> {
        let conn = self.conn.lock();
        let model = model_of(&conn).map_err(|e| self.db(e))?.map(|(m, _)| m);
        conn.query_row(
            "SELECT chunks, tokens, event_id FROM documents WHERE doc_cid = ?",
            [doc_cid],
            |row| {
                Ok(DocRecord {
                    chunks: row.get::<_, i64>(0)? as usize,
                    tokens: row.get::<_, i64>(1)? as usize,
                    event_id: row.get(2)?,
                    model: model.clone(),
                })
            },
        )
        .optional()
        .map_err(|e| self.db(e))
    }

    /// Store a document, its chunks and their vectors (made by `model`) in
    /// one transaction. A document already there is left as it is and its
    /// record returned.
    pub fn insert(
        &self,
        doc: &NewDocument<'_>,
        chunks: &[Chunk],
        vectors: &[Vec<f32>],
        model: &str,
    ) -> Result<DocRecord, RagError> {
        let _inserting = self.inserting.lock();
        if let Some(existing) = self.document(doc.doc_cid)? {
            return Ok(existing);
        }
        let dim = vectors.first().map_or(0, Vec::len);
        let mut conn = self.conn.lock();
        if let Some((have, have_dim)) = model_of(&conn).map_err(|e| self.db(e))?
            && (have != model || have_dim != dim)
        {
            return Err(RagError::ModelMismatch {
                corpus: self.name.clone(),
                have: format!("{have} ({have_dim} dimensions)"),
                got: format!("{model} ({dim} dimensions)"),
            });
        }
        let held: i64 = conn
            .query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))
            .map_err(|e| self.db(e))?;
        if held as usize + chunks.len() > MAX_CORPUS_CHUNKS {
            return Err(RagError::CorpusFull {
                corpus: self.name.clone(),
                max: MAX_CORPUS_CHUNKS,
            });
        }
        let tokens: usize = chunks.iter().map(|c| c.tokens).sum();
        let tx = conn.transaction().map_err(|e| self.db(e))?;
        let mut ids = Vec::with_capacity(chunks.len());
        let doc_id = {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            tx.execute(
                "INSERT OR IGNORE INTO corpus_meta (key, value) VALUES ('model', ?1), ('dim', ?2)",
                params![model, dim as i64],
            )
            .map_err(|e| self.db(e))?;
            tx.execute(
                "INSERT INTO documents (doc_cid, title, language, media, metadata, chunks, tokens, ingested_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    doc.doc_cid,
                    doc.title,
                    doc.language,
                    doc.media,
                    doc.metadata.to_string(),
                    chunks.len() as i64,
                    tokens as i64,
                    now
                ],
            )
            .map_err(|e| self.db(e))?;
            let doc_id = tx.last_insert_rowid();
            let mut chunk_row = tx
                .prepare(
                    "INSERT INTO chunks (doc_id, ord, page, text, tokens) VALUES (?, ?, ?, ?, ?)",
                )
                .map_err(|e| self.db(e))?;
            let mut fts_row = tx
                .prepare("INSERT INTO chunks_fts (rowid, text) VALUES (?, ?)")
                .map_err(|e| self.db(e))?;
            let mut vector_row = tx
                .prepare("INSERT INTO vectors (chunk_id, model, dim, vec) VALUES (?, ?, ?, ?)")
                .map_err(|e| self.db(e))?;
            for (chunk, vector) in chunks.iter().zip(vectors) {
                chunk_row
                    .execute(params![
                        doc_id,
                        chunk.ord,
                        chunk.page,
                        chunk.text,
                        chunk.tokens as i64
                    ])
                    .map_err(|e| self.db(e))?;
                let id = tx.last_insert_rowid();
                fts_row
                    .execute(params![id, chunk.text])
                    .map_err(|e| self.db(e))?;
                vector_row
                    .execute(params![id, model, dim as i64, to_bytes(vector)])
                    .map_err(|e| self.db(e))?;
                ids.push(id);
            }
            doc_id
        };
        tx.commit().map_err(|e| self.db(e))?;
        drop(conn);
        if let Some(loaded) = self.vectors.lock().as_ref()
            && loaded.model == model
        {
            let mut index = loaded.index.write();
            for (id, vector) in ids.into_iter().zip(vectors) {
                index.push(id, doc_id, vector.clone());
            }
        }
        Ok(DocRecord {
            chunks: chunks.len(),
            tokens,
            event_id: None,
            model: Some(model.to_owned()),
        })
    }

    /// Remember the event that told the community of `doc_cid`.
    pub fn set_event(&self, doc_cid: &str, event_id: &str) -> Result<(), RagError> {
        self.conn
            .lock()
            .execute(
                "UPDATE documents SET event_id = ? WHERE doc_cid = ?",
                [event_id, doc_cid],
            )
            .map(drop)
            .map_err(|e| self.db(e))
    }

    /// Ids of the documents `filter` lets through; `None` lets all through.
    fn allowed(
        &self,
        conn: &Connection,
        filter: &Filter,
    ) -> Result<Option<HashSet<i64>>, RagError> {
        if filter.is_empty() {
            return Ok(None);
        }
        let (clause, values) = filter.clause();
        let mut stmt = conn
            .prepare(&format!("SELECT id FROM documents WHERE {clause}"))
            .map_err(|e| self.db(e))?;
        let ids = stmt
            .query_map(params_from_iter(values), |r| r.get::<_, i64>(0))
            .and_then(|rows| rows.collect::<Result<HashSet<i64>, _>>())
            .map_err(|e| self.db(e))?;
        Ok(Some(ids))
    }

    /// The `n` best chunks for the FTS5 query `fts` by BM25, best first.
    pub fn bm25(&self, fts: &str, filter: &Filter, n: usize) -> Result<Vec<i64>, RagError> {
        if fts.is_empty() || n == 0 {
            return Ok(Vec::new());
        }
        let conn = self.conn.lock();
        let (clause, mut values) = filter.clause();
        // Every match is scored before the best are taken; unfiltered, no
        // match needs its chunk row (half the time on 100,000 chunks).
        let sql = if filter.is_empty() {
            "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?
             ORDER BY bm25(chunks_fts), rowid LIMIT ?"
                .to_owned()
        } else {
            format!(
                "SELECT c.id FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid
                 WHERE chunks_fts MATCH ? AND c.doc_id IN (SELECT id FROM documents WHERE {clause})
                 ORDER BY bm25(chunks_fts), c.id LIMIT ?"
            )
        };
        let mut stmt = conn.prepare(&sql).map_err(|e| self.db(e))?;
        values.insert(0, rusqlite::types::Value::Text(fts.to_owned()));
        values.push(rusqlite::types::Value::Integer(n as i64));
        stmt.query_map(params_from_iter(values), |r| r.get::<_, i64>(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.db(e))
    }

    /// The vectors queries use now, loaded on the first call; `None`
    /// before the first document.
    pub fn vectors(&self) -> Result<Option<Arc<Vectors>>, RagError> {
        let mut slot = self.vectors.lock();
        if slot.is_none() {
            *slot = self.load_vectors()?.map(Arc::new);
        }
        Ok(slot.clone())
    }

    /// The `n` chunks whose vectors in `vectors` are nearest `query` (a
    /// vector of `vectors.model`), best first.
    pub fn nearest(
        &self,
        vectors: &Vectors,
        query: &[f32],
        filter: &Filter,
        n: usize,
    ) -> Result<Vec<i64>, RagError> {
        let allowed = {
            let conn = self.conn.lock();
            self.allowed(&conn, filter)?
        };
        Ok(vectors.index.read().nearest(query, n, |doc| {
            allowed.as_ref().is_none_or(|a| a.contains(&doc))
        }))
    }

    fn load_vectors(&self) -> Result<Option<Vectors>, RagError> {
        let conn = self.conn.lock();
        let Some((model, dim)) = model_of(&conn).map_err(|e| self.db(e))? else {
            return Ok(None);
        };
        let mut index = VectorIndex::new(dim);
        let mut stmt = conn
            .prepare(
                "SELECT v.chunk_id, c.doc_id, v.vec FROM vectors v JOIN chunks c ON c.id = v.chunk_id
                 WHERE v.model = ? ORDER BY v.chunk_id",
            )
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map([&model], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(|e| self.db(e))?;
        for row in rows {
            let (id, doc, bytes) = row.map_err(|e| self.db(e))?;
            index.push(id, doc, from_bytes(&bytes));
        }
        Ok(Some(Vectors {
            model,
            index: RwLock::new(index),
        }))
    }

    /// Chunks in the corpus.
    pub fn chunk_count(&self) -> Result<usize, RagError> {
        self.conn
            .lock()
            .query_row("SELECT count(*) FROM chunks", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(|e| self.db(e))
    }

    /// Chunks that already have a vector of `model` in the index being
    /// built (a reindex resumes after them).
    pub fn reindexed(&self, model: &str) -> Result<usize, RagError> {
        self.conn
            .lock()
            .query_row(
                "SELECT count(*) FROM vectors_next WHERE model = ?",
                [model],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(|e| self.db(e))
    }

    /// Up to `n` chunks with ids above `after` that have no vector of
    /// `model` in the index being built: ids and texts, in id order.
    /// Chunks ingested while a reindex runs come after the others.
    pub fn reindex_pending(
        &self,
        model: &str,
        after: i64,
        n: usize,
    ) -> Result<Vec<(i64, String)>, RagError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare(
                "SELECT c.id, c.text FROM chunks c WHERE c.id > ?1 AND NOT EXISTS
                 (SELECT 1 FROM vectors_next n WHERE n.chunk_id = c.id AND n.model = ?2)
                 ORDER BY c.id LIMIT ?3",
            )
            .map_err(|e| self.db(e))?;
        stmt.query_map(params![after, model, n as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.db(e))
    }

    /// Store new vectors of `model` for the chunks named, in one
    /// transaction, in the index being built. Whatever that index holds
    /// of another model goes first: a reindex with another model starts
    /// over.
    pub fn reindex_store(&self, model: &str, vectors: &[(i64, Vec<f32>)]) -> Result<(), RagError> {
        let Some(dim) = vectors.first().map(|(_, v)| v.len()) else {
            return Ok(());
        };
        let mismatch = |have: usize, got: usize| RagError::ModelMismatch {
            corpus: self.name.clone(),
            have: format!("{model} ({have} dimensions)"),
            got: format!("{model} ({got} dimensions)"),
        };
        if let Some((_, v)) = vectors.iter().find(|(_, v)| v.len() != dim) {
            return Err(mismatch(dim, v.len()));
        }
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(|e| self.db(e))?;
        tx.execute("DELETE FROM vectors_next WHERE model != ?", [model])
            .map_err(|e| self.db(e))?;
        let have: Option<i64> = tx
            .query_row("SELECT dim FROM vectors_next LIMIT 1", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.db(e))?;
        if let Some(have) = have.filter(|&have| have as usize != dim) {
            return Err(mismatch(have as usize, dim));
        }
        {
            let mut row = tx
                .prepare(
                    "INSERT OR REPLACE INTO vectors_next (chunk_id, model, dim, vec) VALUES (?, ?, ?, ?)",
                )
                .map_err(|e| self.db(e))?;
            for (id, vector) in vectors {
                row.execute(params![id, model, dim as i64, to_bytes(vector)])
                    .map_err(|e| self.db(e))?;
            }
        }
        tx.commit().map_err(|e| self.db(e))
    }

    /// Make the index being built the one queries use, with `model` as the
    /// corpus's model, in one transaction; refused while a chunk has no
    /// vector of `model` there. The vectors in memory are dropped and load
    /// again on the next query; a query running now finishes on its
    /// snapshot of the old ones.
    pub fn reindex_swap(&self, model: &str) -> Result<Swapped, RagError> {
        let mut slot = self.vectors.lock();
        let mut conn = self.conn.lock();
        let db = |e| self.db(e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let missing: i64 = tx
            .query_row(
                "SELECT count(*) FROM chunks c WHERE NOT EXISTS
                 (SELECT 1 FROM vectors_next n WHERE n.chunk_id = c.id AND n.model = ?)",
                [model],
                |r| r.get(0),
            )
            .map_err(db)?;
        if missing > 0 {
            return Err(RagError::ReindexIncomplete {
                corpus: self.name.clone(),
                missing: missing as usize,
            });
        }
        let (chunks, dim): (i64, Option<i64>) = tx
            .query_row(
                "SELECT (SELECT count(*) FROM chunks),
                        (SELECT dim FROM vectors_next WHERE model = ? LIMIT 1)",
                [model],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db)?;
        let (Some(dim), Some((model_before, _))) = (dim, model_of(&tx).map_err(db)?) else {
            return Err(RagError::NothingToReindex(self.name.clone()));
        };
        tx.execute_batch(&format!(
            "DROP TABLE vectors;
             ALTER TABLE vectors_next RENAME TO vectors;
             CREATE TABLE vectors_next {VECTOR_COLUMNS};"
        ))
        .map_err(db)?;
        // Left-overs of another model, should an earlier reindex have
        // stopped between its deletion and ours.
        tx.execute("DELETE FROM vectors WHERE model != ?", [model])
            .map_err(db)?;
        tx.execute(
            "INSERT OR REPLACE INTO corpus_meta (key, value) VALUES ('model', ?1), ('dim', ?2)",
            params![model, dim],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        *slot = None;
        Ok(Swapped {
            model_before,
            dim: dim as usize,
            chunks: chunks as usize,
        })
    }

    /// The chunks `ids`, in that order (unknown ids left out).
    pub fn hits(&self, ids: &[i64]) -> Result<Vec<Hit>, RagError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare(
                "SELECT c.text, d.doc_cid, d.title, c.page, c.ord FROM chunks c
                 JOIN documents d ON d.id = c.doc_id WHERE c.id = ?",
            )
            .map_err(|e| self.db(e))?;
        let mut hits = Vec::with_capacity(ids.len());
        for id in ids {
            let hit = stmt
                .query_row([id], |r| {
                    Ok(Hit {
                        id: *id,
                        text: r.get(0)?,
                        doc_cid: r.get(1)?,
                        doc_title: r.get(2)?,
                        page: r.get(3)?,
                        ord: r.get(4)?,
                    })
                })
                .optional()
                .map_err(|e| self.db(e))?;
            hits.extend(hit);
        }
        Ok(hits)
    }

    pub fn stats(&self) -> Result<Stats, RagError> {
        let conn = self.conn.lock();
        let count = |sql: &str| -> Result<u64, RagError> {
            conn.query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(|e| self.db(e))
        };
        let docs = count("SELECT count(*) FROM documents")?;
        let chunks = count("SELECT count(*) FROM chunks")?;
        let language_majority = conn
            .query_row(
                "SELECT language FROM documents WHERE language != 'und'
                 GROUP BY language ORDER BY count(*) DESC, language LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db(e))?;
        let size_bytes = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let mut name = self.path.clone().into_os_string();
                name.push(suffix);
                std::fs::metadata(name).ok().map(|m| m.len())
            })
            .sum();
        Ok(Stats {
            docs,
            chunks,
            size_bytes,
            language_majority,
        })
    }
}

fn to_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn model_of(conn: &Connection) -> Result<Option<(String, usize)>, rusqlite::Error> {
    let get = |key: &str| {
        conn.query_row("SELECT value FROM corpus_meta WHERE key = ?", [key], |r| {
            r.get::<_, String>(0)
        })
        .optional()
    };
    let (Some(model), Some(dim)) = (get("model")?, get("dim")?) else {
        return Ok(None);
    };
    Ok(dim.parse().ok().map(|dim| (model, dim)))
}

/// Words too common to tell chunks apart (English and German). With
/// OR-ed terms they would let any chunk match a question through "where"
/// or "the" alone, and fusion would then rank that noise beside the
/// vectors' answer.
const STOPWORDS: &[&str] = &[
    "a", "about", "all", "am", "an", "and", "any", "are", "as", "at", "auf", "aus", "be", "bei",
    "bin", "bist", "but", "by", "can", "could", "das", "dass", "dem", "den", "der", "des", "die",
    "do", "does", "du", "ein", "eine", "einem", "einen", "einer", "er", "es", "for", "from", "für",
    "get", "has", "hat", "have", "how", "i", "ich", "if", "ihr", "im", "in", "is", "ist", "it",
    "its", "kann", "me", "mit", "my", "nach", "nicht", "of", "on", "or", "our", "sich", "sie",
    "sind", "so", "some", "that", "the", "their", "them", "then", "there", "they", "this", "to",
    "und", "up", "us", "von", "was", "we", "what", "when", "where", "which", "who", "why", "wie",
    "will", "wir", "with", "wo", "would", "you", "your", "zu", "zum", "zur",
];

/// The FTS5 query for a user's words: each word quoted (so no user text
/// is ever read as FTS5 syntax), any of them matching, common words left
/// out unless there is nothing else, at most `max`.
pub fn fts_query(text: &str, max: usize) -> String {
    let words: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(max)
        .collect();
    let telling: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !STOPWORDS.contains(&w.to_lowercase().as_str()))
        .collect();
    let chosen = if telling.is_empty() { words } else { telling };
    chosen
        .iter()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(" OR ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chunk(ord: u32, text: &str) -> Chunk {
        Chunk {
            ord,
            page: Some(ord + 1),
            text: text.into(),
            tokens: 3,
        }
    }

    fn doc<'a>(cid: &'a str, language: &'a str, metadata: &'a Value) -> NewDocument<'a> {
        NewDocument {
            doc_cid: cid,
            title: "T",
            language,
            media: "text/plain",
            metadata,
        }
    }

    #[test]
    fn user_words_never_become_fts_syntax() {
        assert_eq!(
            fts_query("Wie reinige ich\"Regen-wasser?", 10),
            "\"reinige\" OR \"Regen\" OR \"wasser\""
        );
        assert_eq!(fts_query("NEAR( * ) AND OR", 2), "\"NEAR\"");
        assert_eq!(fts_query("?!", 10), "");
        assert_eq!(fts_query("Who is it?", 10), "\"Who\" OR \"is\" OR \"it\"");
    }

    #[test]
    fn documents_are_stored_once_and_searched_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Corpus::open(dir.path(), "c", false).unwrap().is_none());
        let corpus = Corpus::open(dir.path(), "c", true).unwrap().unwrap();
        let meta = json!({"year": 2020});
        let chunks = [
            chunk(0, "Boil rainwater for one minute"),
            chunk(1, "Solar panels on the Café roof"),
        ];
        let vectors = [vec![1.0, 0.0], vec![0.0, 1.0]];
        let first = corpus
            .insert(&doc("blake3:a", "en", &meta), &chunks, &vectors, "m")
            .unwrap();
        assert_eq!((first.chunks, first.tokens), (2, 6));
        let again = corpus
            .insert(
                &doc("blake3:a", "en", &meta),
                &chunks[..1],
                &vectors[..1],
                "m",
            )
            .unwrap();
        assert_eq!(
            (again.chunks, again.tokens),
            (2, 6),
            "the first ingest stands"
        );

        // Diacritics are folded both ways.
        let cafe = corpus
            .bm25(&fts_query("cafe", 8), &Filter::default(), 5)
            .unwrap();
        assert_eq!(corpus.hits(&cafe).unwrap()[0].page, Some(2));
        let loaded = corpus.vectors().unwrap().unwrap();
        assert_eq!(
            corpus
                .nearest(&loaded, &[0.1, 1.0], &Filter::default(), 1)
                .unwrap(),
            cafe
        );

        // A second document of another model is refused; a filter narrows.
        let other = json!({"year": 1990});
        let err = corpus.insert(
            &doc("blake3:b", "de", &other),
            &chunks,
            &[vec![1.0], vec![1.0]],
            "m2",
        );
        assert!(matches!(err, Err(RagError::ModelMismatch { .. })));
        corpus
            .insert(&doc("blake3:b", "de", &other), &chunks, &vectors, "m")
            .unwrap();
        let old = Filter {
            max_year: Some(2000),
            ..Filter::default()
        };
        let hits = corpus
            .hits(&corpus.bm25(&fts_query("rainwater", 8), &old, 5).unwrap())
            .unwrap();
        assert_eq!(
            hits.iter().map(|h| h.doc_cid.as_str()).collect::<Vec<_>>(),
            ["blake3:b"]
        );
        let de = Filter {
            language: Some("de".into()),
            ..Filter::default()
        };
        let near = corpus.nearest(&loaded, &[1.0, 0.0], &de, 5).unwrap();
        assert_eq!(
            corpus
                .hits(&near)
                .unwrap()
                .iter()
                .filter(|h| h.doc_cid == "blake3:a")
                .count(),
            0
        );

        let stats = corpus.stats().unwrap();
        assert_eq!((stats.docs, stats.chunks), (2, 4));
        assert!(stats.size_bytes > 0);
        assert_eq!(stats.language_majority.as_deref(), Some("de"));

        // Vectors read back from disk are the ones written.
        drop(corpus);
        let reopened = Corpus::open(dir.path(), "c", false).unwrap().unwrap();
        assert_eq!(reopened.model().unwrap(), Some(("m".into(), 2)));
        let vectors = reopened.vectors().unwrap().unwrap();
        assert_eq!(vectors.len(), 4);
        assert_eq!(
            reopened
                .nearest(&vectors, &[0.1, 1.0], &Filter::default(), 4)
                .unwrap()
                .len(),
            4
        );
    }

    /// A corpus of `docs` one-chunk documents with 2-dimensional vectors
    /// of model `m`.
    fn corpus_of(dir: &Path, docs: usize) -> Corpus {
        let corpus = Corpus::open(dir, "c", true).unwrap().unwrap();
        for i in 0..docs {
            add(&corpus, i, "m", vec![1.0, i as f32]).unwrap();
        }
        corpus
    }

    fn add(
        corpus: &Corpus,
        i: usize,
        model: &str,
        vector: Vec<f32>,
    ) -> Result<DocRecord, RagError> {
        let meta = json!({});
        let cid = format!("blake3:{i}");
        let text = format!("document number {i}");
        corpus.insert(
            &doc(&cid, "en", &meta),
            &[chunk(0, &text)],
            &[vector],
            model,
        )
    }

    /// New vectors of `model` (3 dimensions, unlike `m`'s 2) for up to `n`
    /// pending chunks after `after`; the last id stored.
    fn reindex_some(corpus: &Corpus, model: &str, after: i64, n: usize) -> i64 {
        let pending = corpus.reindex_pending(model, after, n).unwrap();
        let vectors: Vec<(i64, Vec<f32>)> = pending
            .iter()
            .map(|(id, _)| (*id, vec![0.0, 0.0, *id as f32]))
            .collect();
        corpus.reindex_store(model, &vectors).unwrap();
        pending.last().map_or(after, |(id, _)| *id)
    }

    fn incomplete(result: Result<Swapped, RagError>) -> usize {
        match result {
            Err(RagError::ReindexIncomplete { missing, .. }) => missing,
            other => panic!("expected a refused swap, got {other:?}"),
        }
    }

    #[test]
    fn an_interrupted_reindex_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = corpus_of(dir.path(), 5);
        assert_eq!(reindex_some(&corpus, "m2", 0, 2), 2);
        // Killed here: what was stored is on disk.
        drop(corpus);
        let corpus = Corpus::open(dir.path(), "c", false).unwrap().unwrap();
        assert_eq!(corpus.reindexed("m2").unwrap(), 2);
        let rest: Vec<i64> = corpus
            .reindex_pending("m2", 0, 10)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(rest, [3, 4, 5]);
        assert_eq!(
            corpus.reindex_pending("m2", 0, 1).unwrap()[0].1,
            "document number 2"
        );
        assert_eq!(incomplete(corpus.reindex_swap("m2")), 3);
        reindex_some(&corpus, "m2", 0, 10);
        assert_eq!(corpus.reindexed("m2").unwrap(), 5);
        let swapped = corpus.reindex_swap("m2").unwrap();
        assert_eq!(
            swapped,
            Swapped {
                model_before: "m".into(),
                dim: 3,
                chunks: 5
            }
        );
        assert_eq!(corpus.model().unwrap(), Some(("m2".into(), 3)));
        assert_eq!(
            corpus.reindexed("m2").unwrap(),
            0,
            "the next index starts empty"
        );
        let vectors = corpus.vectors().unwrap().unwrap();
        assert_eq!((vectors.model.as_str(), vectors.len()), ("m2", 5));
        assert_eq!(
            corpus
                .nearest(&vectors, &[0.0, 0.0, 1.0], &Filter::default(), 1)
                .unwrap()
                .len(),
            1
        );
        // And after a restart.
        drop((vectors, corpus));
        let corpus = Corpus::open(dir.path(), "c", false).unwrap().unwrap();
        assert_eq!(corpus.vectors().unwrap().unwrap().len(), 5);
    }

    #[test]
    fn the_old_vectors_answer_until_the_swap() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = corpus_of(dir.path(), 3);
        let old = corpus.vectors().unwrap().unwrap();
        let last = reindex_some(&corpus, "m2", 0, 2);
        // Queries still get `m` and its vectors, all of them.
        assert_eq!(corpus.model().unwrap(), Some(("m".into(), 2)));
        let now = corpus.vectors().unwrap().unwrap();
        assert!(Arc::ptr_eq(&old, &now));
        assert_eq!(
            corpus
                .nearest(&now, &[1.0, 2.0], &Filter::default(), 3)
                .unwrap(),
            [3, 2, 1]
        );
        reindex_some(&corpus, "m2", last, 10);
        corpus.reindex_swap("m2").unwrap();
        // A query that took the old snapshot finishes on it; the next one
        // gets the new vectors.
        assert_eq!(old.model, "m");
        assert_eq!(
            corpus
                .nearest(&old, &[1.0, 2.0], &Filter::default(), 1)
                .unwrap(),
            [3]
        );
        let new = corpus.vectors().unwrap().unwrap();
        assert_eq!((new.model.as_str(), new.len()), ("m2", 3));
        assert!(
            corpus
                .nearest(&new, &[1.0, 2.0], &Filter::default(), 1)
                .unwrap()
                .is_empty(),
            "a query vector of the old model matches nothing"
        );
    }

    #[test]
    fn chunks_ingested_during_a_reindex_are_covered_before_the_swap() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = corpus_of(dir.path(), 2);
        let loaded = corpus.vectors().unwrap().unwrap();
        let last = reindex_some(&corpus, "m2", 0, 10);
        // Ingested meanwhile, with the model in use: it answers at once.
        add(&corpus, 7, "m", vec![0.0, 1.0]).unwrap();
        assert_eq!(loaded.len(), 3);
        assert_eq!(incomplete(corpus.reindex_swap("m2")), 1);
        assert_eq!(
            corpus.reindex_pending("m2", last, 10).unwrap(),
            [(3, "document number 7".to_owned())]
        );
        reindex_some(&corpus, "m2", last, 10);
        corpus.reindex_swap("m2").unwrap();
        assert_eq!(corpus.vectors().unwrap().unwrap().len(), 3);
        // From now on the corpus takes only the new model's vectors.
        assert!(matches!(
            add(&corpus, 8, "m", vec![0.0, 1.0]),
            Err(RagError::ModelMismatch { .. })
        ));
        add(&corpus, 8, "m2", vec![0.0, 1.0, 0.0]).unwrap();
        assert_eq!(corpus.vectors().unwrap().unwrap().len(), 4);
    }

    #[test]
    fn a_reindex_with_another_model_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = corpus_of(dir.path(), 4);
        reindex_some(&corpus, "m2", 0, 3);
        assert_eq!(corpus.reindexed("m2").unwrap(), 3);
        // Asking what m3 lacks changes nothing yet; storing m3 drops m2's.
        assert_eq!(corpus.reindex_pending("m3", 0, 10).unwrap().len(), 4);
        assert_eq!(corpus.reindexed("m2").unwrap(), 3);
        reindex_some(&corpus, "m3", 0, 1);
        assert_eq!(
            (
                corpus.reindexed("m2").unwrap(),
                corpus.reindexed("m3").unwrap()
            ),
            (0, 1)
        );
        assert_eq!(incomplete(corpus.reindex_swap("m2")), 4);
        // One model's vectors have one length.
        let other_length = corpus.reindex_store("m3", &[(2, vec![1.0; 5])]);
        assert!(matches!(other_length, Err(RagError::ModelMismatch { .. })));
        let mixed = corpus.reindex_store("m3", &[(2, vec![1.0; 3]), (3, vec![1.0; 2])]);
        assert!(matches!(mixed, Err(RagError::ModelMismatch { .. })));
        assert_eq!(corpus.reindexed("m3").unwrap(), 1);
        // The same model again rebuilds: a swap to `m` itself.
        reindex_some(&corpus, "m", 0, 10);
        let swapped = corpus.reindex_swap("m").unwrap();
        assert_eq!((swapped.model_before.as_str(), swapped.dim), ("m", 3));
    }

    #[test]
    fn an_empty_corpus_has_nothing_to_reindex() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = corpus_of(dir.path(), 0);
        assert!(corpus.reindex_pending("m2", 0, 10).unwrap().is_empty());
        assert!(matches!(
            corpus.reindex_swap("m2"),
            Err(RagError::NothingToReindex(_))
        ));
    }
}
