//! The feature modules this server runs: the one place they are chosen and wired.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use starling_modules::{Module, ModuleSet};
use starling_services::{Clock, ClockSource};

/// Build the set of enabled modules, in registration order.
pub fn enabled() -> anyhow::Result<ModuleSet> {
    let started = Instant::now();
    let clock: ClockSource = Arc::new(move || Clock {
        unix_seconds: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        uptime_seconds: started.elapsed().as_secs(),
    });
    let modules: Vec<Arc<dyn Module>> = vec![
        Arc::new(starling_services::Ping),
        Arc::new(starling_services::Version),
        Arc::new(starling_services::Time(Arc::clone(&clock))),
        Arc::new(starling_services::Uptime(clock)),
    ];
    Ok(ModuleSet::build(modules)?)
}
