//! Schema migrations of both backends: the one ordered list of schema versions and the one
//! runner that applies those a database lacks.
//!
//! A backend says how it keeps its version and runs a step ([`Schema`]: SQLite in
//! `PRAGMA user_version`, PostgreSQL in `schema_migrations` under an advisory lock); what to
//! apply, in which order, and when to refuse is decided here once, so the backends cannot drift
//! apart. Each version runs in its own transaction together with the record of it, so a crash
//! leaves a database at the previous version, never between two.

use std::future::Future;

use crate::StorageError;

/// One schema version, in each backend's SQL.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// Numbered from 1 without gaps; the list below is in this order.
    pub(crate) version: u32,
    /// The statements on SQLite.
    pub(crate) sqlite: &'static str,
    /// The same schema on PostgreSQL.
    pub(crate) postgres: &'static str,
}

/// Every schema version, oldest first. Append new versions; never edit or renumber one that
/// has shipped, since databases record the numbers they have applied.
pub(crate) const MIGRATIONS: &[Migration] = &[
    // Accounts and their SCRAM keys.
    Migration {
        version: 1,
        sqlite: crate::sqlite::migrations::SCHEMA_V1,
        postgres: crate::postgres::migrations::SCHEMA_V1,
    },
    // Rosters with versions and groups, subscription requests, offline messages.
    Migration {
        version: 2,
        sqlite: crate::sqlite::migrations::SCHEMA_V2,
        postgres: crate::postgres::migrations::SCHEMA_V2,
    },
    // Feature modules' per-account data.
    Migration {
        version: 3,
        sqlite: crate::sqlite::migrations::SCHEMA_V3,
        postgres: crate::postgres::migrations::SCHEMA_V3,
    },
    // Message archives (XEP-0313) and their usage counts.
    Migration {
        version: 4,
        sqlite: crate::sqlite::migrations::SCHEMA_V4,
        postgres: crate::postgres::migrations::SCHEMA_V4,
    },
];

/// How one backend records its schema version and applies a migration.
pub(crate) trait Schema {
    /// This backend's statements of `migration`.
    fn statements(migration: &Migration) -> &'static str;

    /// Called before anything else: take whatever lock keeps concurrent migrators apart and
    /// create the place the version is kept, if the backend needs either.
    fn begin(&mut self) -> impl Future<Output = Result<(), StorageError>>;

    /// The newest version applied; 0 for an empty database.
    fn current_version(&mut self) -> impl Future<Output = Result<u32, StorageError>>;

    /// Run `statements` and record `version`, in one transaction; a failure is
    /// [`StorageError::Migration`] naming `version`, with nothing of it applied.
    fn apply(
        &mut self,
        version: u32,
        statements: &'static str,
    ) -> impl Future<Output = Result<(), StorageError>>;

    /// Called after the last migration: release what [`Schema::begin`] took. Not called when
    /// migrating fails; the backend's lock must then end with its connection.
    fn end(&mut self) -> impl Future<Output = Result<(), StorageError>>;
}

/// Applies the migrations of `migrations` newer than the database's version, oldest first,
/// each in its own transaction. Fails with [`StorageError::Migration`] if the database is newer
/// than the newest of `migrations` (written by a newer Starling) or a migration fails.
pub(crate) async fn migrate<S: Schema>(
    schema: &mut S,
    migrations: &[Migration],
) -> Result<(), StorageError> {
    schema.begin().await?;
    let current = schema.current_version().await?;
    let newest = migrations.last().map_or(0, |migration| migration.version);
    if current > newest {
        return Err(StorageError::Migration {
            version: current,
            reason: format!(
                "database schema is newer than this build, which knows versions up to {newest}"
            ),
        });
    }
    for migration in migrations.iter().filter(|m| m.version > current) {
        schema
            .apply(migration.version, S::statements(migration))
            .await?;
    }
    schema.end().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schema in memory: which versions ran, in order, and which one fails.
    #[derive(Default)]
    struct Recorded {
        version: u32,
        applied: Vec<&'static str>,
        failing: Option<u32>,
        ended: bool,
    }

    impl Schema for Recorded {
        fn statements(migration: &Migration) -> &'static str {
            migration.sqlite
        }

        async fn begin(&mut self) -> Result<(), StorageError> {
            Ok(())
        }

        async fn current_version(&mut self) -> Result<u32, StorageError> {
            Ok(self.version)
        }

        async fn apply(
            &mut self,
            version: u32,
            statements: &'static str,
        ) -> Result<(), StorageError> {
            if self.failing == Some(version) {
                return Err(StorageError::Migration {
                    version,
                    reason: "refused".to_owned(),
                });
            }
            self.applied.push(statements);
            self.version = version;
            Ok(())
        }

        async fn end(&mut self) -> Result<(), StorageError> {
            self.ended = true;
            Ok(())
        }
    }

    const LIST: &[Migration] = &[
        Migration {
            version: 1,
            sqlite: "one",
            postgres: "",
        },
        Migration {
            version: 2,
            sqlite: "two",
            postgres: "",
        },
        Migration {
            version: 3,
            sqlite: "three",
            postgres: "",
        },
    ];

    fn run(schema: &mut Recorded, list: &[Migration]) -> Result<(), StorageError> {
        crate::sqlite::migrations::now(migrate(schema, list))
    }

    #[test]
    fn the_list_is_numbered_from_one_without_gaps() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        let expected: Vec<u32> =
            (1..=u32::try_from(MIGRATIONS.len()).expect("few migrations")).collect();
        assert_eq!(versions, expected);
        assert!(
            MIGRATIONS
                .iter()
                .all(|m| !m.sqlite.trim().is_empty() && !m.postgres.trim().is_empty()),
            "every version exists on both backends"
        );
    }

    #[test]
    fn only_the_missing_versions_run_in_order() {
        let mut schema = Recorded::default();
        assert_eq!(run(&mut schema, &LIST[..1]), Ok(()));
        assert_eq!(run(&mut schema, LIST), Ok(()));
        assert_eq!(run(&mut schema, LIST), Ok(()));
        assert_eq!(schema.applied, ["one", "two", "three"]);
        assert!(schema.ended);
    }

    #[test]
    fn a_failure_stops_at_its_version() {
        let mut schema = Recorded {
            failing: Some(2),
            ..Recorded::default()
        };
        assert_eq!(
            run(&mut schema, LIST),
            Err(StorageError::Migration {
                version: 2,
                reason: "refused".to_owned(),
            })
        );
        assert_eq!((schema.version, schema.applied), (1, vec!["one"]));
    }

    #[test]
    fn a_newer_database_is_refused_untouched() {
        let mut schema = Recorded {
            version: 4,
            ..Recorded::default()
        };
        assert_eq!(
            run(&mut schema, LIST),
            Err(StorageError::Migration {
                version: 4,
                reason: "database schema is newer than this build, which knows versions up to 3"
                    .to_owned(),
            })
        );
        assert!(schema.applied.is_empty());
    }
}
