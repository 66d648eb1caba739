//! The event contract under `contracts/`: the event type names the code stores are the ones the
//! schemas describe, and every event a test shop wrote — data and metadata — validates against
//! the schema of its type and version (checked when each test stops its shop).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use domain::Event;
use jsonschema::{Registry, Validator};
use serde_json::Value;

/// Where the schemas are, and the base of their `$id`s.
const EVENTS_DIR: &str = "../../contracts/events";
const ID_BASE: &str = "https://minimall.shop/contracts/events/";

pub struct Contract {
    /// By event type and version.
    data: HashMap<(String, u64), Validator>,
    metadata: Validator,
}

fn read(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(EVENTS_DIR)
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The schema files of event types: `{type}.v{version}.schema.json`.
fn event_schema_files() -> Vec<(String, u64, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(EVENTS_DIR);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let (event_type, version) = name.strip_suffix(".schema.json")?.split_once(".v")?;
            Some((event_type.to_string(), version.parse().ok()?, name.clone()))
        })
        .collect();
    files.sort();
    files
}

impl Contract {
    pub fn get() -> &'static Contract {
        static CONTRACT: OnceLock<Contract> = OnceLock::new();
        CONTRACT.get_or_init(Contract::load)
    }

    fn load() -> Contract {
        let registry = Registry::new()
            .add(
                format!("{ID_BASE}common.schema.json"),
                read("common.schema.json"),
            )
            .unwrap()
            .prepare()
            .unwrap();
        let build = |schema: &Value| {
            jsonschema::options()
                .with_registry(&registry)
                .should_validate_formats(true)
                .build(schema)
                .unwrap_or_else(|e| panic!("{}: {e}", schema["$id"]))
        };
        let data = event_schema_files()
            .into_iter()
            .map(|(event_type, version, file)| ((event_type, version), build(&read(&file))))
            .collect();
        Contract {
            data,
            metadata: build(&read("metadata.schema.json")),
        }
    }

    /// What is wrong with a stored event, by the contract; empty if nothing.
    pub fn violations(&self, event_type: &str, data: &Value, metadata: &Value) -> Vec<String> {
        let version = data
            .get(domain::contract::SCHEMA_VERSION_FIELD)
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let Some(schema) = self.data.get(&(event_type.to_string(), version)) else {
            return vec![format!("no schema for {event_type} version {version}")];
        };
        let errors = |validator: &Validator, instance: &Value, what: &str| -> Vec<String> {
            validator
                .iter_errors(instance)
                .map(|e| format!("{what} {}: {e}", e.instance_path()))
                .collect()
        };
        let mut found = errors(schema, data, "data");
        found.extend(errors(&self.metadata, metadata, "metadata"));
        found
    }
}

/// Every type each aggregate stores, as the code names them.
fn stored_types() -> Vec<&'static str> {
    [
        domain::order::OrderEvent::TYPES,
        domain::payment::PaymentEvent::TYPES,
        domain::product::ProductEvent::TYPES,
        domain::reservation::ReservationEvent::TYPES,
        domain::delivery::DeliveryEvent::TYPES,
        domain::saga::SagaEvent::TYPES,
        saga::BookkeepingEvent::TYPES,
        saga::LeaseEvent::TYPES,
    ]
    .concat()
}

#[test]
fn the_event_types_stored_are_exactly_those_the_contract_describes_in_every_version() {
    let mut described: Vec<(String, u64)> = event_schema_files()
        .into_iter()
        .map(|(event_type, version, _)| (event_type, version))
        .collect();
    described.sort();
    let mut stored: Vec<(String, u64)> = stored_types()
        .into_iter()
        .flat_map(|event_type| {
            (1..=domain::contract::version_of(event_type)).map(|v| (event_type.to_string(), v))
        })
        .collect();
    stored.sort();
    assert_eq!(stored, described);
    // Each schema says which type and version it is.
    for (event_type, version, file) in event_schema_files() {
        let schema = read(&file);
        assert_eq!(schema["x-eventType"], event_type.as_str(), "{file}");
        assert_eq!(schema["x-version"], version, "{file}");
        assert_eq!(
            schema["$id"],
            format!("{ID_BASE}{file}").as_str(),
            "{file} names itself"
        );
    }
}

#[test]
fn the_schemas_refuse_what_the_shop_would_not_write() {
    let contract = Contract::get();
    let metadata = serde_json::json!({
        "$correlationId": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "$causationId": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "actor": {"kind": "customer", "id": "alice"},
        "at": "2026-11-24T12:00:00Z"
    });
    let placed = serde_json::json!({
        "orderId": "0f8fad5b-d9cb-469f-a165-70867728950e", "orderStatus": "OrderPlaced",
        "customerId": "alice", "productId": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "quantity": 2, "unitPrice": 1250, "amount": 2500, "at": "2026-11-24T12:00:00Z"
    });
    assert_eq!(
        contract.violations("OrderPlaced", &placed, &metadata),
        Vec::<String>::new()
    );
    let mut wrong = placed.clone();
    wrong["quantity"] = 0.into();
    assert_eq!(
        contract.violations("OrderPlaced", &wrong, &metadata).len(),
        1
    );
    let mut unknown = placed.clone();
    unknown["coupon"] = "FREE".into();
    assert_eq!(
        contract
            .violations("OrderPlaced", &unknown, &metadata)
            .len(),
        1
    );
    assert!(
        !contract
            .violations("OrderPlaced", &placed, &serde_json::json!({}))
            .is_empty(),
        "metadata without its required members"
    );
    assert_eq!(
        contract.violations("OrderRenamed", &placed, &metadata),
        ["no schema for OrderRenamed version 1"]
    );
}
