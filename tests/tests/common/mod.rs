//! Helpers shared by the store test binaries: the PostgreSQL test cluster and temp files.

// Each test binary uses only some of these helpers.
#![allow(dead_code)]
// Helpers stop the test on a failed setup, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use oms_store::PostgresStore;

/// The PostgreSQL URL of the throwaway cluster `scripts/test` starts.
pub fn postgres_url() -> String {
    std::env::var("OMS_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "OMS_TEST_DATABASE_URL is not set. Run scripts/test (it starts a throwaway PostgreSQL on \
             127.0.0.1), or start one yourself (eval \"$(scripts/pg-start /tmp/oms-pg)\") and export \
             OMS_TEST_DATABASE_URL=postgresql://USER@127.0.0.1:PORT/DB"
        )
    })
}

/// A schema name private to `test` in this process, dropped if a previous run left it.
pub fn fresh_schema(test: &str) -> String {
    let schema = format!("t_{test}_{}", std::process::id());
    let mut c = postgres::Client::connect(&postgres_url(), postgres::NoTls).unwrap();
    c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
    schema
}

/// A fresh schema per test, so tests never see each other's rows.
pub fn postgres_store(test: &str) -> PostgresStore {
    let schema = fresh_schema(test);
    PostgresStore::connect_with_schema(&postgres_url(), &schema).unwrap()
}

/// Another connection to an existing schema (its migrations already applied).
pub fn postgres_connect(schema: &str) -> PostgresStore {
    PostgresStore::connect_with_schema(&postgres_url(), schema).unwrap()
}

/// An empty directory private to `name` in this process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oms-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
