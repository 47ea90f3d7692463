//! A node in a temporary directory: blob store, event log, bus, the RAG
//! service and (when asked) the real all-MiniLM-L6-v2 as `embed.text`,
//! and under a second name at a gated neighbour
//! (`neighbour_offers_gated_copy`).

// Shared by several test binaries, each using part of it; helpers of
// tests, where a failure should panic.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hearthnet_base::{DeviceKey, NodeId, Stability, TrustLevel};
use hearthnet_blobs::BlobStore;
use hearthnet_bus::{Bus, BusSettings, Call, CallError, CallStream, Handler, InboundCall, Version};
use hearthnet_embed::ModelDir;
use hearthnet_events::EventLog;
use hearthnet_identity::node_manifest::CapabilitySpec;
use hearthnet_rag::RagService;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

pub use hearthnet_test_models::{minilm, workspace};

pub fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(workspace().join("testdata/rag").join(name)).unwrap()
}

pub struct Node {
    pub bus: Arc<Bus>,
    pub blobs: Arc<BlobStore>,
    pub log: EventLog,
    pub key: DeviceKey,
    pub corpora: PathBuf,
    _dir: tempfile::TempDir,
}

/// A node offering the RAG service, and `embed.text` when `embed`.
pub fn node(embed: bool) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let key = DeviceKey::generate();
    let genesis =
        hearthnet_identity::community::Genesis::create(&key, "t", Default::default()).unwrap();
    let log = EventLog::open(
        hearthnet_events::LogPaths::in_state_dir(&dir.path().join("state")),
        genesis.manifest.community_id,
        hearthnet_events::Limits::default(),
        Some(genesis.created_event.to_value()),
        None,
    )
    .unwrap();
    let blobs = Arc::new(BlobStore::open(&dir.path().join("blobs"), 0.9).unwrap());
    let bus = Arc::new(Bus::new(
        key.node_id(),
        BusSettings::default(),
        Arc::default(),
    ));
    if embed {
        let service = hearthnet_embed::EmbedService::new("all-minilm-l6-v2", &minilm()).unwrap();
        bus.register(Arc::new(service)).unwrap();
    }
    let corpora = dir.path().join("corpora");
    let rag = RagService::new(
        corpora.clone(),
        blobs.clone(),
        log.clone(),
        key.clone(),
        Arc::downgrade(&bus),
    );
    // Registering compiles every descriptor: a bad one fails here.
    bus.register(Arc::new(rag)).unwrap();
    Node {
        bus,
        blobs,
        log,
        key,
        corpora,
        _dir: dir,
    }
}

impl Node {
    /// Store `bytes` as a blob; its CID.
    pub fn add(&self, bytes: &[u8]) -> String {
        let mut reader = bytes;
        self.blobs
            .add(&mut reader, |_| Ok(()))
            .unwrap()
            .cid
            .to_string()
    }

    /// Call as this node's own key.
    pub async fn call(
        &self,
        capability: &str,
        params: Value,
        input: Value,
    ) -> Result<Value, CallError> {
        self.call_as(
            self.key.node_id(),
            TrustLevel::Anchor,
            capability,
            params,
            input,
        )
        .await
    }

    pub async fn call_as(
        &self,
        caller: NodeId,
        level: TrustLevel,
        capability: &str,
        params: Value,
        input: Value,
    ) -> Result<Value, CallError> {
        let body = json!({"params": params, "input": input});
        let call = InboundCall::new(capability, Version::new(1, 0), body, caller, level);
        self.bus.call(call)?.outcome().await
    }

    pub async fn ingest(&self, corpus: &str, input: Value) -> Result<Value, CallError> {
        self.call("rag.ingest", json!({"corpus": corpus}), input)
            .await
    }

    pub async fn query(&self, corpus: &str, input: Value) -> Result<Value, CallError> {
        self.call("rag.query", json!({"corpus": corpus}), input)
            .await
    }

    /// `rag.reindex` of `corpus` as this node's own key, streamed.
    pub fn start_reindex(&self, corpus: &str, input: Value) -> Result<CallStream, CallError> {
        let body = json!({"params": {"corpus": corpus}, "input": input});
        let call = InboundCall {
            stream: true,
            ..InboundCall::new(
                "rag.reindex",
                Version::new(1, 0),
                body,
                self.key.node_id(),
                TrustLevel::Anchor,
            )
        };
        self.bus.call(call)
    }

    /// Have a neighbour (a made-up node) offer the real all-MiniLM-L6-v2
    /// weights as `embed.text` under the model name `name`: for the
    /// index, another model. (One node offers one local `embed.text`.)
    /// Each call waits for a permit of the returned gate, none at first,
    /// so a test can hold a reindex mid-way.
    pub fn neighbour_offers_gated_copy(&self, name: &str) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        let model = Arc::new(ModelDir::inspect(&minilm()).unwrap().load().unwrap());
        let dim = model.dir().dim;
        let spec = CapabilitySpec {
            name: "embed.text".into(),
            version: "1.0".into(),
            stability: Stability::Stable,
            schema_hash: String::new(),
            params: json!({"model": name, "dim": dim}),
            max_concurrent: 4,
            timeout_seconds: None,
        };
        let (name, held) = (name.to_owned(), gate.clone());
        let provider: Handler = Arc::new(move |call: Call| {
            let (name, gate, model) = (name.clone(), held.clone(), model.clone());
            Box::pin(async move {
                gate.acquire().await.unwrap().forget();
                let texts: Vec<String> =
                    serde_json::from_value(call.input["texts"].clone()).unwrap();
                let vectors =
                    tokio::task::spawn_blocking(move || model.embed(&texts, true, &|| false))
                        .await
                        .unwrap()
                        .unwrap();
                Ok(json!({
                    "output": {"embeddings": vectors, "dim": dim},
                    "meta": {"model": name, "ms": 0}
                }))
            })
        });
        let neighbour = DeviceKey::generate().node_id();
        self.bus
            .set_remote(neighbour, &[spec], Duration::from_secs(600), provider);
        gate
    }
}
