//! One corpus on disk: `<corpora_dir>/<name>.sqlite` (WAL) with its
//! documents, chunks, an FTS5 index over the chunks and their vectors
//! (f32 little-endian, with the model that made them), plus the vectors
//! in memory for brute-force search. Blocking: call from blocking threads.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
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
CREATE TABLE IF NOT EXISTS vectors (
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id),
    model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vec BLOB NOT NULL
);
";

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

pub struct Corpus {
    pub name: String,
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Loaded on the first vector search, then kept in step by inserts.
    vectors: Mutex<Option<VectorIndex>>,
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
        Ok(Some(Corpus {
            name: name.to_owned(),
            path,
            conn: Mutex::new(conn),
            vectors: Mutex::new(None),
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
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                vector_row
                    .execute(params![id, model, dim as i64, bytes])
                    .map_err(|e| self.db(e))?;
                ids.push(id);
            }
            doc_id
        };
        tx.commit().map_err(|e| self.db(e))?;
        drop(conn);
        if let Some(index) = self.vectors.lock().as_mut() {
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
        let mut stmt = conn
            .prepare(&format!(
                "SELECT c.id FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid
                 WHERE chunks_fts MATCH ? AND c.doc_id IN (SELECT id FROM documents WHERE {clause})
                 ORDER BY bm25(chunks_fts), c.id LIMIT ?"
            ))
            .map_err(|e| self.db(e))?;
        values.insert(0, rusqlite::types::Value::Text(fts.to_owned()));
        values.push(rusqlite::types::Value::Integer(n as i64));
        stmt.query_map(params_from_iter(values), |r| r.get::<_, i64>(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.db(e))
    }

    /// The `n` chunks nearest `query` (of this corpus's model), best first.
    pub fn nearest(&self, query: &[f32], filter: &Filter, n: usize) -> Result<Vec<i64>, RagError> {
        let allowed = {
            let conn = self.conn.lock();
            self.allowed(&conn, filter)?
        };
        let mut vectors = self.vectors.lock();
        if vectors.is_none() {
            *vectors = Some(self.load_vectors()?);
        }
        let index = vectors.as_ref().map_or_else(Vec::new, |index| {
            index.nearest(query, n, |doc| {
                allowed.as_ref().is_none_or(|a| a.contains(&doc))
            })
        });
        Ok(index)
    }

    fn load_vectors(&self) -> Result<VectorIndex, RagError> {
        let conn = self.conn.lock();
        let Some((model, dim)) = model_of(&conn).map_err(|e| self.db(e))? else {
            return Ok(VectorIndex::default());
        };
        let mut index = VectorIndex::new(dim);
        let mut stmt = conn
            .prepare(
                "SELECT v.chunk_id, c.doc_id, v.vec FROM vectors v JOIN chunks c ON c.id = v.chunk_id
                 WHERE v.model = ? ORDER BY v.chunk_id",
            )
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map([model], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(|e| self.db(e))?;
        for row in rows {
            let (id, doc, bytes) = row.map_err(|e| self.db(e))?;
            let vector = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            index.push(id, doc, vector);
        }
        Ok(index)
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
        assert_eq!(
            corpus.nearest(&[0.1, 1.0], &Filter::default(), 1).unwrap(),
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
        let near = corpus.nearest(&[1.0, 0.0], &de, 5).unwrap();
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
        assert_eq!(
            reopened
                .nearest(&[0.1, 1.0], &Filter::default(), 4)
                .unwrap()
                .len(),
            4
        );
    }
}
