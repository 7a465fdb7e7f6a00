//! The in-memory store meets the contract.
#![allow(missing_docs)]

convert_store_tests::contract_tests!(convert_store_memory::MemoryStore::new);

#[test]
fn contract_one_winner_across_instances_sharing_one_store() {
    // Two handles on one store: the in-memory store is shared by threads, not processes.
    let s: std::sync::Arc<dyn convert_ports::DataStore> =
        std::sync::Arc::new(convert_store_memory::MemoryStore::new());
    convert_store_tests::one_winner_across_instances(s.clone(), s);
}

#[test]
fn contract_counter_across_handles_of_one_store() {
    let s: std::sync::Arc<dyn convert_ports::DataStore> =
        std::sync::Arc::new(convert_store_memory::MemoryStore::new());
    convert_store_tests::counter_across_instances(vec![s.clone(), s.clone(), s]);
}

#[test]
fn run_all_passes() {
    convert_store_tests::run_all(convert_store_memory::MemoryStore::new);
}
