//! The worked example of ARCHITECTURE.md ("Adding a service"): a toy
//! capability declared, registered and called, and its schema enforced.

use std::sync::Arc;

use hearthnet_base::{DeviceKey, ErrorCode, TrustLevel};
use hearthnet_bus::{Bus, BusSettings, Call, CallError, Capability, CapabilityDescriptor};
use hearthnet_bus::{InboundCall, Service, Version};
use serde_json::{Value, json};

struct Greeter;

impl Service for Greeter {
    fn name(&self) -> &'static str {
        "greeter"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let name = json!({"type": "string", "maxLength": 64});
        let input = json!({"type": "object", "required": ["name"], "properties": {"name": name}});
        let greet = CapabilityDescriptor::new("experimental.greet", input);
        vec![Capability::new(greet, &self, Self::greet)]
    }
}

impl Greeter {
    async fn greet(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        // The bus enforced the schema: `name` is a string of at most 64.
        let name = call.input["name"].as_str().unwrap_or_default();
        Ok(json!({"output": {"text": format!("Hello, {name}!")}, "meta": {}}))
    }
}

#[tokio::test]
async fn a_toy_service_is_declared_registered_and_called() {
    let (node, v1) = (DeviceKey::generate().node_id(), Version::new(1, 0));
    let bus = Bus::new(node, BusSettings::default(), Arc::default());
    bus.register(Arc::new(Greeter)).unwrap();
    let greet = |input: Value| {
        let body = json!({"input": input});
        InboundCall::new("experimental.greet", v1, body, node, TrustLevel::Member)
    };

    let answer = bus.call(greet(json!({"name": "Ada"})));
    let answer = answer.unwrap().outcome().await.unwrap();
    assert_eq!(answer["output"]["text"], "Hello, Ada!");

    let Err(refused) = bus.call(greet(json!({"name": 42}))) else {
        panic!("a number was taken for a name");
    };
    assert_eq!(refused.code, ErrorCode::SchemaMismatch);
    assert!(refused.message.contains("`/input/name`"));
}
