//! How long "the latest 50 messages" takes from a large SQLite archive (issue 17's target:
//! p99 ≤ 5 ms from 1,000,000 messages).
//!
//! `cargo run --release -p starling-storage --example archive_latency -- [MESSAGES] [QUERIES]`
//! fills one account's archive in a scratch database file (in transactions of 5,000, as the
//! group-commit writer would), then times `QUERIES` queries of each kind through
//! `ArchiveStore`: the newest page of 50, the newest 50 with one contact (`with`), a page of
//! 50 after an id in the middle, and the account's usage (what a quota check reads), and
//! prints p50, p99 and the maximum of each.
#![allow(clippy::print_stdout)] // An example: printing its measurements is its job.

use std::time::{Duration, Instant};

use jid::BareJid;
use starling_sasl::{ScramHash, ScramKeys, StoredCredentials};
use starling_storage::{
    AccountStore, ArchiveFilter, ArchiveQuota, ArchiveStore, ArchivedMessage, Direction, PageFrom,
    SqliteStore, WithFilter, id_at,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let messages: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let queries: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(run(messages, queries))
}

async fn run(messages: u64, queries: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("archive.sqlite"))?;
    let owner: BareJid = "juliet@capulet.example".parse()?;
    store
        .create_account(
            &owner,
            &StoredCredentials {
                keys: vec![ScramKeys {
                    hash: ScramHash::Sha256,
                    salt: vec![1; 16],
                    iterations: 4096,
                    stored_key: vec![2; 32],
                    server_key: vec![3; 32],
                }],
            },
        )
        .await?;
    let contacts: Vec<BareJid> = (0..20)
        .map(|n| format!("contact{n}@montague.example").parse())
        .collect::<Result<_, _>>()?;
    let start_ms = 1_700_000_000_000u64;
    let filled = Instant::now();
    let mut middle = None;
    for chunk in (0..messages).collect::<Vec<_>>().chunks(5000) {
        let rows: Vec<(BareJid, ArchivedMessage)> = chunk
            .iter()
            .map(|&n| {
                let with = contacts[(n % 20) as usize].clone();
                let id = id_at(start_ms + n, [(n % 251) as u8; 10]);
                if n == messages / 2 {
                    middle = Some(id);
                }
                let stanza = format!(
                    "<message xmlns='jabber:client' from='{with}/orchard' to='{owner}' type='chat' id='m{n}'>\
                     <body>Message number {n}, long enough to look like a line of chat.</body>\
                     <stanza-id xmlns='urn:xmpp:sid:0' by='{owner}' id='{id}'/></message>"
                );
                (
                    owner.clone(),
                    ArchivedMessage {
                        id,
                        with,
                        with_resource: Some("orchard".to_owned()),
                        direction: Direction::Incoming,
                        origin_id: None,
                        stanza,
                    },
                )
            })
            .collect();
        store.archive_append(&rows, ArchiveQuota::UNLIMITED).await?;
    }
    println!(
        "{messages} messages archived in {:.1} s",
        filled.elapsed().as_secs_f64()
    );
    let all = ArchiveFilter::default();
    let with_one = ArchiveFilter {
        with: Some(WithFilter {
            bare: contacts[7].clone(),
            resource: None,
        }),
        ..ArchiveFilter::default()
    };
    let after_middle = ArchiveFilter {
        after_id: middle,
        ..ArchiveFilter::default()
    };
    report("latest 50", queries, || async {
        let page = store
            .archive_page(&owner, &all, PageFrom::Newest, 50)
            .await?;
        assert_eq!(page.messages.len(), 50.min(messages as usize));
        Ok(())
    })
    .await?;
    report("latest 50 with one contact", queries, || async {
        store
            .archive_page(&owner, &with_one, PageFrom::Newest, 50)
            .await?;
        Ok(())
    })
    .await?;
    report("50 after an id in the middle", queries, || async {
        store
            .archive_page(&owner, &after_middle, PageFrom::Oldest, 50)
            .await?;
        Ok(())
    })
    .await?;
    report("usage (quota check)", queries, || async {
        store.archive_usage(&owner).await?;
        Ok(())
    })
    .await?;
    Ok(())
}

async fn report<F, Fut>(
    name: &str,
    queries: usize,
    mut query: F,
) -> Result<(), Box<dyn std::error::Error>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Box<dyn std::error::Error>>>,
{
    let mut times: Vec<Duration> = Vec::with_capacity(queries);
    for _ in 0..queries {
        let started = Instant::now();
        query().await?;
        times.push(started.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize];
    println!(
        "{name}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({queries} queries)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
    );
    Ok(())
}
