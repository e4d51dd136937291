//! The persistence contract suite against the PostgreSQL backend, each case
//! on a fresh schema of a throwaway server (`scripts/pg-test-server`).

mod common;

mod pg {
    crate::common::contract::contract_tests!(crate::common::PgHarness);
}
