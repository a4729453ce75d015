//! The feature modules this server runs: the one place they are chosen and wired, in the
//! order they register (hook order is by priority band, not by this order).

use std::sync::Arc;

use starling_config::Config;
use starling_modules::{Module, ModuleSet};
use starling_registry::Registry;
use starling_storage::AnyStore;

/// Build the set of modules `config` enables, then `extra` (modules of a program that embeds
/// the server).
pub fn enabled(
    config: &Config,
    store: &AnyStore,
    registry: &Arc<Registry>,
    extra: Vec<Arc<dyn Module>>,
) -> anyhow::Result<ModuleSet> {
    let enabled = &config.modules;
    let clock = starling_services::system_clock();
    let mut modules: Vec<Arc<dyn Module>> = Vec::new();
    if enabled.ping {
        modules.push(Arc::new(starling_services::Ping));
    }
    if enabled.version {
        modules.push(Arc::new(starling_services::Version));
    }
    if enabled.time {
        modules.push(Arc::new(starling_services::Time(Arc::clone(&clock))));
    }
    if enabled.uptime {
        modules.push(Arc::new(starling_services::Uptime(clock)));
    }
    if enabled.blocking {
        modules.push(Arc::new(starling_blocking::Blocking::new(
            store.clone(),
            Arc::clone(registry),
            config.limits.max_blocklist_items,
        )));
    }
    if enabled.private {
        modules.push(Arc::new(starling_private::Private::new(
            store.clone(),
            config.limits.max_private_bytes,
        )));
    }
    if enabled.vcard {
        modules.push(Arc::new(starling_vcard::VCard::new(
            store.clone(),
            config.limits.max_vcard_bytes,
        )));
    }
    if enabled.last {
        modules.push(Arc::new(starling_last::LastActivity::new(
            store.clone(),
            Arc::clone(registry),
            Arc::new(starling_services::unix_seconds),
        )));
    }
    if enabled.carbons {
        modules.push(Arc::new(starling_carbons::Carbons::new(Arc::clone(
            registry,
        ))));
    }
    if enabled.csi {
        modules.push(Arc::new(starling_csi::Csi::new(starling_csi::CsiLimits {
            max_held_stanzas: config.limits.csi_max_held_stanzas,
            max_held_bytes: config.limits.csi_max_held_bytes,
        })));
    }
    if enabled.mam {
        let mam = Arc::new(starling_mam::Mam::new(
            store.clone(),
            Arc::clone(registry),
            config.archive.settings(&config.limits),
            Box::new(uuid::Uuid::now_v7),
        ));
        tokio::spawn(Arc::clone(&mam).run_retention(Arc::new(starling_services::unix_seconds)));
        modules.push(mam);
    }
    if enabled.caps {
        modules.push(Arc::new(starling_caps::Caps::default()));
    }
    modules.extend(extra);
    Ok(ModuleSet::build(modules)?)
}
