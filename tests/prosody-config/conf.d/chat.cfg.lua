-- Included by ../prosody.cfg.lua.
VirtualHost "chat.example.net"
	modules_disabled = { "vcard_legacy" }

Component "conference.example.org" "muc"
	modules_enabled = { "muc_mam" }

Component "gateway.example.org"
	component_secret = "not-a-real-secret"
