//! The one place that names where the persistence contract suite lives
//! (`hangar-testkit`, feature `persistence`) and the record builders of
//! `hangar_storage::persistence::testing`; when they move, only these lines
//! change.

#![allow(unused_imports, reason = "each test file uses some of these")]

pub use hangar_storage::persistence::testing::{lww, or_record};
pub use hangar_testkit::persistence::SuiteHarness;
pub use hangar_testkit::persistence_suite as contract_tests;
