//! Opening the configured store, for the running server and the commands that work on the
//! database directly.

use anyhow::Context as _;
use starling_config::{Config, StorageBackend};
use starling_storage::AnyStore;

/// Open the configured store (running its migrations).
pub async fn open(config: &Config) -> anyhow::Result<AnyStore> {
    match config.storage.backend {
        StorageBackend::Sqlite => {
            starling_private_fs::create_private_dir(&config.data_dir).with_context(|| {
                format!("cannot create data directory {}", config.data_dir.display())
            })?;
            let path = config.sqlite_path();
            let store = starling_storage::SqliteStore::open(&path)
                .with_context(|| format!("cannot open database {}", path.display()))?;
            Ok(store.into())
        }
        StorageBackend::Postgres => {
            let url =
                config.storage.postgres_url.as_deref().context(
                    "storage.postgres_url is required when storage.backend = \"postgres\"",
                )?;
            let store = starling_storage::PostgresStore::connect_with(
                url,
                config.storage.postgres_allow_plaintext_remote,
            )
            .await
            .context("cannot open the PostgreSQL database (storage.postgres_url)")?;
            Ok(store.into())
        }
    }
}
