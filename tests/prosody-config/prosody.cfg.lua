-- A Prosody configuration with several hosts, for `starling import-prosody-config`
-- (tests/tests/prosody_migration.rs). The test copies this directory and puts certificates
-- for the hosts in certs/ first: example.org.crt/.key and chat.example.net/fullchain.pem.

admins = { "admin@example.org" }

modules_enabled = {
	"roster"; "saslauth"; "tls"; "disco";
	"blocklist"; "carbons"; "private"; "vcard_legacy";
	"ping"; "time"; "version"; "uptime"; "lastactivity";
	"limits";
	--"mam";
}
modules_disabled = { "s2s" }

interfaces = { "127.0.0.1" }
c2s_ports = { 5222 }
c2s_direct_tls_ports = { 5223 }
http_ports = { 5280 }

c2s_require_encryption = true
allow_unencrypted_plain_auth = false
default_iteration_count = 12000
c2s_stanza_size_limit = 65536
c2s_timeout = 90

limits = {
	c2s = { rate = "64kb/s"; burst = "3s" };
	s2sin = { rate = "30kb/s" };
}

authentication = "internal_hashed"
storage = "internal"
data_path = "/var/lib/prosody"
certificates = "certs"

log = { info = "*console" }

-- Code is read as data, never run; these are named and skipped.
local domain = "example.org"
if os.getenv("PROSODY_DEBUG") then
	log = { debug = "*console" }
end

VirtualHost "example.org"
	modules_enabled = { "mam" }

VirtualHost "old.example.org"
	enabled = false

Include "conf.d/*.cfg.lua"
