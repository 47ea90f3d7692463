//! The worked example of ARCHITECTURE.md ("Adding a service"): a toy
//! capability declared, registered and called, and its schema enforced.

use std::sync::Arc;

use hearthnet_base::{DeviceKey, ErrorCode, TrustLevel};
use hearthnet_bus::{
    Bus, BusSettings, Call, CallError, Capability, CapabilityDescriptor, InboundCall, Service,
    Version,
};
use serde_json::{Value, json};

struct Greeter;

impl Service for Greeter {
    fn name(&self) -> &'static str {
        "greeter"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let input = json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "maxLength": 64}}});
        vec![Capability::new(
            CapabilityDescriptor::new("experimental.greet", input),
            &self,
            Self::greet,
        )]
    }
}

impl Greeter {
    async fn greet(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        // The bus enforced the schema: `name` is a string of at most 64.
        let name = call.input["name"].as_str().unwrap_or_default();
        Ok(json!({"output": {"text": format!("Hello, {name}!")}, "meta": {}}))
    }
}

fn greet(bus: &Bus, input: Value) -> InboundCall {
    InboundCall {
        capability: "experimental.greet".into(),
        version: Version::new(1, 0),
        body: json!({"params": {}, "input": input}),
        caller: bus.node_id(),
        caller_level: TrustLevel::Member,
        trace_id: "01J0000000000000000000TOY1".into(),
        timeout: None,
        stream: false,
        target: None,
    }
}

#[tokio::test]
async fn a_toy_service_is_declared_registered_and_called() {
    let bus = Bus::new(
        DeviceKey::generate().node_id(),
        BusSettings::default(),
        Arc::default(),
    );
    bus.register(Arc::new(Greeter))
        .expect("a valid declaration");

    let answer = bus
        .call(greet(&bus, json!({"name": "Ada"})))
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert_eq!(answer["output"]["text"], "Hello, Ada!");

    let Err(refused) = bus.call(greet(&bus, json!({"name": 42}))) else {
        panic!("a number was taken for a name");
    };
    assert_eq!(refused.code, ErrorCode::SchemaMismatch);
    assert!(
        refused.message.contains("`/input/name`"),
        "{}",
        refused.message
    );
}
