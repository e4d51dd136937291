//! The one place that names where the persistence contract suite lives
//! (today `hangar_storage::persistence::testing`); when it moves, only
//! these lines change.

#![allow(unused_imports, reason = "each test file uses some of these")]

pub use hangar_storage::persistence::testing::suite::{lww, or_record, SuiteHarness};
pub use hangar_storage::persistence_conformance_tests as contract_tests;
