//! Shared by the integration tests that run on both database engines.

/// For each `name`, two tests — on a fresh SQLite file and on a fresh
/// PostgreSQL schema (at CLINIVOX_TEST_PG_URL) — that call
/// `name(store, config)` with the demo clinic.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let config = clinivox::testing::demo_config();
                let store = clinivox::testing::sqlite_store(dir.path(), &config).await.unwrap();
                super::$name(store, config).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let config = clinivox::testing::demo_config();
                let store = clinivox::testing::postgres_store(&config, 16).await.expect("PostgreSQL at CLINIVOX_TEST_PG_URL");
                super::$name(store, config).await;
            }
        }
    )*};
}
