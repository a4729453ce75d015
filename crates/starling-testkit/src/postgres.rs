//! Scratch databases on the PostgreSQL that `cargo xtask test` starts.

/// A new, empty database on the PostgreSQL named by `STARLING_TEST_POSTGRES_URL` (set by
/// `cargo xtask test` and `cargo xtask with-postgres`), named `<prefix>_<pid>_<nanos>`, as a
/// connection string for the server.
pub async fn fresh_postgres_database(prefix: &str) -> anyhow::Result<String> {
    let base = std::env::var("STARLING_TEST_POSTGRES_URL").map_err(|_| {
        anyhow::anyhow!(
            "STARLING_TEST_POSTGRES_URL is not set: run through `cargo xtask test`, which starts PostgreSQL"
        )
    })?;
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let name = format!("{prefix}_{}_{nanos}", std::process::id());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    Ok(format!("{base} dbname={name}"))
}
