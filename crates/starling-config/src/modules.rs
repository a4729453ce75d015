//! `[modules]`: which feature modules run. Each is a boolean, on by default, so a config file
//! names only the ones it turns off.

use serde::Deserialize;

/// `[modules]`: every feature module the server has, on (`true`, the default) or off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Modules {
    /// XEP-0199 ping, answered by the server (and for accounts).
    pub ping: bool,
    /// XEP-0092 software version of the server.
    pub version: bool,
    /// XEP-0202 entity time of the server.
    pub time: bool,
    /// XEP-0012 uptime: the server's own last activity.
    pub uptime: bool,
    /// XEP-0191 blocking command.
    pub blocking: bool,
    /// XEP-0049 private XML storage.
    pub private: bool,
    /// XEP-0054 vcard-temp.
    pub vcard: bool,
    /// XEP-0012 last activity of accounts.
    pub last: bool,
    /// XEP-0115 capabilities of the server, in stream features.
    pub caps: bool,
    /// XEP-0280 message carbons.
    pub carbons: bool,
    /// XEP-0352 client state indication.
    pub csi: bool,
    /// XEP-0313 message archive, with XEP-0441 preferences and XEP-0359 stanza ids (its
    /// policy and limits are `[archive]`).
    pub mam: bool,
}

impl Default for Modules {
    fn default() -> Self {
        Self {
            ping: true,
            version: true,
            time: true,
            uptime: true,
            blocking: true,
            private: true,
            vcard: true,
            last: true,
            caps: true,
            carbons: true,
            csi: true,
            mam: true,
        }
    }
}
