//! The database: a connection pool, the embedded migrations, and the retry of transactions that
//! lost a serialization conflict.
//!
//! Everything written here runs on PostgreSQL and CockroachDB alike. Changes run SERIALIZABLE
//! (CockroachDB's only level, and PostgreSQL's safest), so two writers that read the same rows
//! cannot both commit: one gets SQLSTATE 40001 and is retried from the start, a bounded number of
//! times with a jittered pause. A unique violation on a row both inserted (23505: two control
//! planes numbering the same version) is retried the same way.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// The migrations, in order: (number, name, SQL). Applied at start, each once, recorded in
/// `schema_migrations`.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "store", include_str!("../migrations/0001_store.sql"))];

/// How many times a transaction is tried before its conflict is reported (503).
pub const MAX_ATTEMPTS: u32 = 30;

/// A pool of `size` connections to `url`. Connects nothing yet.
pub fn pool(url: &str, size: usize) -> Result<Pool, String> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| format!("database: {e}"))?;
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| format!("database pool: {e}"))
}

/// Whether `e` is a conflict that trying again may resolve.
pub fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// The pause before attempt `attempt` (1-based) of a conflicting transaction: grows with the
/// attempt, jittered so that two writers do not collide again in step.
pub fn backoff(attempt: u32) -> Duration {
    let base = 5u64 << attempt.min(6);
    Duration::from_millis(base / 2 + fastrand::u64(0..=base))
}

/// Applies every migration not yet recorded, in order. Safe when several control planes start
/// at once: each migration's transaction first inserts its row in `schema_migrations`, so a
/// second one waits on that row and then finds it applied (or, if the first failed, applies it).
pub async fn migrate(pool: &Pool) -> Result<(), String> {
    let mut client = connect_with_patience(pool).await?;
    let create = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)";
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Two sessions creating the same table at once can collide in the catalog: retry.
        match client.batch_execute(create).await {
            Ok(()) => break,
            Err(e) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(error = %e, "creating schema_migrations: retrying");
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => return Err(format!("database: schema_migrations: {e}")),
        }
    }
    for &(number, name, sql) in MIGRATIONS {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match apply(&mut client, number, name, sql).await {
                Ok(true) => {
                    tracing::info!(migration = number, name, "migration applied");
                    break;
                }
                Ok(false) => break,
                Err(e) if retryable(&e) && attempt < MAX_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(format!("database: migration {number:04}_{name}: {e}")),
            }
        }
    }
    Ok(())
}

/// One migration in one transaction; `Ok(false)` when it was already applied.
async fn apply(
    client: &mut deadpool_postgres::Object,
    number: i64,
    name: &str,
    sql: &str,
) -> Result<bool, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let inserted = tx
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, $2, $3) ON CONFLICT (version) DO NOTHING",
            &[&number, &name, &crate::now_ms()],
        )
        .await?;
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.batch_execute(sql).await?;
    tx.commit().await?;
    Ok(true)
}

/// The first connection, waited for a while: a control plane started together with its
/// database (a test, a compose file) should not fail because the database is a second late.
async fn connect_with_patience(pool: &Pool) -> Result<deadpool_postgres::Object, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match pool.get().await {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "database not reachable yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("database: {e}")),
        }
    }
}
