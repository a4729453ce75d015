//! Tests of the configuration translation, on files written to a scratch directory.

use super::*;

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("starling-prosody-config-")
        .tempdir()
        .expect("scratch directory")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("directory");
    }
    std::fs::write(&path, text).expect("write");
    path
}

fn translate_text(dir: &Path, text: &str) -> Translation {
    let main = write(dir, "prosody.cfg.lua", text);
    translate(&main, &Options::default()).expect("translates")
}

/// The body of the output after its two comment lines.
fn body(translation: &Translation) -> String {
    translation
        .toml
        .lines()
        .skip_while(|line| line.starts_with('#') || line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_owned()
}

/// Debian's default file, cut down to its statements (the comments are as Debian's).
const DEBIAN_LIKE: &str = r#"-- Prosody Example Configuration File
admins = { }
plugin_paths = { "/usr/local/lib/prosody/modules" }
modules_enabled = {
	-- Generally required
		"disco"; -- Service discovery
		"roster"; -- Allow users to have a roster. Recommended ;)
		"saslauth"; -- Authentication for clients and servers. Recommended if you want to log in.
		"tls"; -- Add support for secure TLS on c2s/s2s connections
		"blocklist"; -- Allow users to block communications with other users
		"carbons"; -- Keep multiple online clients in sync
		"dialback"; -- Support for verifying remote servers using DNS
		"limits"; -- Enable bandwidth limiting for XMPP connections
		"private"; -- Legacy account storage mechanism (XEP-0049)
		"vcard_legacy"; -- Conversion between legacy vCard and PEP Avatar, vcard
		"ping"; -- Replies to XMPP pings with pongs
		"uptime"; -- Report how long server has been running
		"version"; -- Replies to server version requests
		--"mam"; -- Store recent messages to allow multi-device synchronization
		"posix"; -- POSIX functionality, sends server to background, enables syslog, etc.
}
modules_disabled = {
	-- "offline"; -- Store offline messages
}
pidfile = "/run/prosody/prosody.pid";
s2s_secure_auth = true
limits = {
	c2s = {
		rate = "10kb/s";
	};
	s2sin = {
		rate = "30kb/s";
	};
}
authentication = "internal_hashed"
archive_expires_after = "1w" -- Remove archived messages after 1 week
log = {
	info = "/var/log/prosody/prosody.log";
	error = "/var/log/prosody/prosody.err";
	{ levels = { "error" }; to = "syslog";  };
}
certificates = "certs"
VirtualHost "localhost"
--VirtualHost "example.com"
--Component "conference.example.com" "muc"
Include "conf.d/*.cfg.lua"
"#;

#[test]
fn debian_default_configuration() {
    let dir = scratch();
    write(
        dir.path(),
        "conf.d/example.com.cfg.lua",
        "VirtualHost \"example.com\"\n\tenabled = false -- Remove this line to enable this host\n\
         \tssl = {\n\t\tkey = \"/etc/prosody/certs/example.com.key\";\n\t\tcertificate = \"/etc/prosody/certs/example.com.crt\";\n\t\t}\n\
         Component \"conference.example.com\" \"muc\"\n",
    );
    write(
        dir.path(),
        "conf.d/localhost.cfg.lua",
        "-- Section for localhost\nVirtualHost \"localhost\"\n",
    );
    let translation = translate_text(dir.path(), DEBIAN_LIKE);
    assert_eq!(
        body(&translation),
        r#"hosts = ["localhost"]
[listen]
starttls = ["0.0.0.0:5222"]
direct_tls = []
[c2s]
require_encryption = true
allow_plain_without_tls = false
scram_iterations = 10000
[limits]
read_bytes_per_sec = 10000
read_bytes_per_sec_unauthenticated = 10000
read_burst_bytes = 20000
[storage]
backend = "sqlite"
[modules]
ping = true
version = true
time = false
uptime = true
blocking = true
private = true
vcard = true
last = false
caps = true"#
            .replace("\n[", "\n\n[")
    );
    let conf_d = dir.path().join("conf.d");
    assert_eq!(
        translation.files,
        [
            dir.path().join("prosody.cfg.lua"),
            conf_d.join("example.com.cfg.lua"),
            conf_d.join("localhost.cfg.lua"),
        ]
    );
    let certs = dir.path().join("certs");
    assert_eq!(
        translation.notes,
        [
            "host example.com: disabled in Prosody (enabled = false); not served".to_owned(),
            "listen: left out [::]:5222 (Prosody's \"::\"), which cannot be bound next to \
             0.0.0.0:5222; on Linux [::]:5222 takes IPv4 too, so use it in place of \
             0.0.0.0:5222 if this machine has IPv6"
                .to_owned(),
            format!(
                "host localhost: no certificate in Prosody's configuration or in {}; Starling \
                 generates a self-signed one until [tls.hosts.\"localhost\"] names yours",
                certs.display()
            ),
            "limits.s2sin: only client connections (c2s) have a Starling equivalent".to_owned(),
            "data: Prosody's accounts, rosters, vCards, private XML and block lists are not in \
             its configuration; copy them with \
             `starling --config <this file> import-prosody /var/lib/prosody`"
                .to_owned(),
            "mod_carbons: XEP-0280 message carbons are not implemented yet".to_owned(),
            "mod_dialback: server-to-server federation is not implemented yet".to_owned(),
            "mod_s2s: server-to-server federation is not implemented yet; remote domains get \
             <remote-server-not-found/>"
                .to_owned(),
            "component conference.example.com (mod_muc): components are not implemented in \
             Starling yet; not served"
                .to_owned(),
        ]
    );
}

#[test]
fn several_hosts_certificates_ports_storage_and_what_is_left() {
    let dir = scratch();
    let d = dir.path();
    write(d, "certs/a.example.crt", "cert");
    write(d, "certs/a.example.key", "key");
    write(d, "certs/b.example/fullchain.pem", "cert");
    write(d, "certs/b.example/privkey.pem", "key");
    write(d, "certs/parent.example.pem", "both");
    write(d, "tls/global.crt", "cert");
    write(d, "tls/global.key", "key");
    let translation = translate_text(
        d,
        r#"
interfaces = { "*", "192.0.2.7", "::1", "xmpp.example" }
c2s_ports = { 5222, 5322 }
c2s_direct_tls_ports = { 5223 }
c2s_direct_tls_interfaces = { "127.0.0.1" }
s2s_ports = { 5269 }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
default_iteration_count = 1000
c2s_stanza_size_limit = 4194304
c2s_timeout = 120
ssl = { certificate = "tls/global.crt"; key = "tls/global.key" }
storage = "sql"
sql = { driver = "PostgreSQL", database = "prosody", username = "prosody", password = "it's secret", host = "db.example", port = 5433 }
modules_enabled = { "ping", "mam", "lastactivity" }
some_community_option = "x"
local secret = os.getenv("S")

VirtualHost "a.example"
  modules_enabled = { "vcard" }
  c2s_require_encryption = true
VirtualHost "b.example"
VirtualHost "chat.parent.example"
VirtualHost "d.example"
  ssl = { certificate = "/nonexistent/d.crt", key = "/nonexistent/d.key" }
Component "gateway.example"
  component_secret = "password"
"#,
    );
    let certs = d.join("certs");
    let toml = body(&translation);
    let expected = format!(
        r#"hosts = ["a.example", "b.example", "chat.parent.example", "d.example"]

[listen]
starttls = ["0.0.0.0:5222", "0.0.0.0:5322", "[::1]:5222", "[::1]:5322"]
direct_tls = ["127.0.0.1:5223"]

[tls]
certificate = "{global_crt}"
private_key = "{global_key}"

[tls.hosts."a.example"]
certificate = "{a_crt}"
private_key = "{a_key}"

[tls.hosts."b.example"]
certificate = "{b_crt}"
private_key = "{b_key}"

[tls.hosts."chat.parent.example"]
certificate = "{p}"
private_key = "{p}"

[c2s]
require_encryption = false
allow_plain_without_tls = true
scram_iterations = 4096
auth_timeout_secs = 120

[limits]
max_stanza_bytes = 4194304
outbound_queue_bytes = 4194304

[storage]
backend = "postgres"
postgres_url = "host=db.example port=5433 user=prosody password='it\\'s secret' dbname=starling sslmode=require"

[modules]
ping = true
version = false
time = false
uptime = false
blocking = false
private = false
vcard = true
last = true
caps = false"#,
        global_crt = d.join("tls/global.crt").display(),
        global_key = d.join("tls/global.key").display(),
        a_crt = certs.join("a.example.crt").display(),
        a_key = certs.join("a.example.key").display(),
        b_crt = certs.join("b.example/fullchain.pem").display(),
        b_key = certs.join("b.example/privkey.pem").display(),
        p = certs.join("parent.example.pem").display(),
    );
    assert_eq!(toml, expected);
    let notes = translation.notes.join("\n");
    for expected in [
        "prosody.cfg.lua:17: not read, as it is not a constant (set what it does by hand): local secret = os.getenv(\"S\")",
        "listen: interface \"xmpp.example\" is not an IP address",
        "listen: left out 192.0.2.7:5222 (Prosody's \"192.0.2.7\"), which cannot be bound next to 0.0.0.0:5222",
        "s2s_ports: server-to-server is not implemented in Starling yet",
        "d.example's ssl names /nonexistent/d.crt, which does not exist here; not translated",
        "default_iteration_count = 1000 is outside Starling's 4096..=600000; 4096 is used",
        "storage: PostgreSQL on db.example is reached with sslmode=require",
        "Starling uses its own database `starling` on the same server",
        "modules.vcard: Prosody loads mod_vcard on a.example only",
        "mod_mam: XEP-0313 message archives are not implemented yet",
        "component gateway.example (external, XEP-0114): components are not implemented",
        "some_community_option: no equivalent in Starling; not translated",
        "c2s_require_encryption (in host a.example): Starling has no per-host setting for it",
    ] {
        assert!(
            notes.contains(expected),
            "missing note {expected:?} in:\n{notes}"
        );
    }
    assert!(
        !notes.contains("component_secret"),
        "component settings are covered by its note"
    );
}

#[test]
fn ipv6_listen_addresses_are_bracketed() {
    // SocketAddr's Display brackets IPv6, which is what check-config parses.
    let dir = scratch();
    let translation = translate_text(
        dir.path(),
        "interfaces = { \"::1\" }\nVirtualHost \"x.example\"\n",
    );
    assert!(
        translation.toml.contains("starttls = [\"[::1]:5222\"]"),
        "{}",
        translation.toml
    );
}

#[test]
fn no_host_is_an_error() {
    let dir = scratch();
    let main = write(
        dir.path(),
        "prosody.cfg.lua",
        "VirtualHost \"a.example\"\nenabled = false\n",
    );
    let err = translate(&main, &Options::default()).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("no enabled VirtualHost; there is nothing to serve"),
        "{err}"
    );
}

#[test]
fn hostile_configurations_are_bounded() {
    let dir = scratch();
    let d = dir.path();
    // A file that includes itself stops at the nesting bound.
    let main = write(
        d,
        "loop.cfg.lua",
        "VirtualHost \"a.example\"\nInclude \"loop.cfg.lua\"\n",
    );
    let err = translate(&main, &Options::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("includes nest deeper than {MAX_INCLUDE_DEPTH}")),
        "{err}"
    );
    // Too many files.
    for i in 0..=MAX_CONFIG_FILES {
        write(d, &format!("many/{i:03}.cfg.lua"), "x = 1\n");
    }
    let main = write(
        d,
        "many.cfg.lua",
        "VirtualHost \"a.example\"\nInclude \"many/*.cfg.lua\"\n",
    );
    let err = translate(&main, &Options::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("more than {MAX_CONFIG_FILES} configuration files")),
        "{err}"
    );
    // A file over the size limit is refused without being read whole.
    let big = d.join("big.cfg.lua");
    let file = std::fs::File::create(&big).expect("create");
    file.set_len(MAX_CONFIG_BYTES + 1).expect("sparse file");
    let err = translate(&big, &Options::default()).unwrap_err();
    assert!(matches!(err, BackupError::TooLarge { .. }), "{err}");
    // A syntax error is reported with its file and line.
    let main = write(
        d,
        "broken.cfg.lua",
        "VirtualHost \"a.example\"\nx = \"open\n",
    );
    let err = translate(&main, &Options::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}:2: line break inside a string", main.display())
    );
    // An Include that matches nothing is named.
    let translation = translate_text(
        d,
        "VirtualHost \"a.example\"\nInclude \"nothing\\\"\\n[x]\"\n",
    );
    assert!(
        translation
            .notes
            .iter()
            .any(|n| n.contains("matches no file"))
    );
}

#[test]
fn globs_rates_and_quoting() {
    assert!(glob_matches(b"*.cfg.lua", b"localhost.cfg.lua"));
    assert!(glob_matches(b"a?c*", b"abcdef"));
    assert!(!glob_matches(b"*.cfg.lua", b"localhost.cfg.lua~"));
    assert!(!glob_matches(b"a?c", b"ac"));
    // No exponential backtracking.
    let name = "a".repeat(10_000);
    assert!(!glob_matches(
        "*a".repeat(50)
            .as_bytes()
            .iter()
            .chain(b"b")
            .copied()
            .collect::<Vec<_>>()
            .as_slice(),
        name.as_bytes()
    ));
    let s = |t: &str| Value::Str(t.as_bytes().to_vec());
    assert_eq!(parse_rate(Some(&s("10kb/s"))), Some(10_000));
    assert_eq!(parse_rate(Some(&s("3 MB/s"))), Some(3_000_000));
    assert_eq!(parse_rate(Some(&s("500b/s"))), Some(500));
    assert_eq!(parse_rate(Some(&s("fast"))), None);
    assert_eq!(parse_burst(Some(&s("3s"))), Some(3));
    assert_eq!(parse_burst(Some(&Value::Number(5.0))), Some(5));
    assert_eq!(toml_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    assert_eq!(libpq_value("plain"), "plain");
    assert_eq!(libpq_value("it's a b\\c"), "'it\\'s a b\\\\c'");
    assert_eq!(libpq_value(""), "''");
}
