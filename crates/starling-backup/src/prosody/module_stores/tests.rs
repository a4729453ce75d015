//! Prosody's vcard, private and blocklist files, written the way its 0.12 modules write them,
//! imported into module data.

use std::path::{Path, PathBuf};

use starling_storage::AccountDataEntry;

use crate::prosody::{ProsodyImport, read_dir};

/// A scratch Prosody data directory, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("starling-prosody-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    fn write(&self, path: &str, content: &str) {
        let path = self.0.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn entry(store: &str, key: &str, value: &str) -> AccountDataEntry {
    AccountDataEntry {
        store: store.to_owned(),
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
    }
}

fn import(dir: &Dir) -> ProsodyImport {
    read_dir(dir.path(), None).expect("reads")
}

fn module_data<'a>(import: &'a ProsodyImport, jid: &str) -> &'a [AccountDataEntry] {
    &import
        .hosts
        .iter()
        .flat_map(|host| &host.accounts)
        .find(|account| account.data.jid.as_str() == jid)
        .unwrap_or_else(|| panic!("{jid} was imported"))
        .data
        .module_data
}

/// juliet's files, in `util.serialization`'s style (`;` separators, `\ddd` escapes).
fn juliet(dir: &Dir) {
    dir.write(
        "localhost/accounts/juliet.dat",
        "return { password = \"pw\" };",
    );
    dir.write(
        "localhost/vcard/juliet.dat",
        r#"return {
	["name"] = "vCard";
	["attr"] = {
		["xmlns"] = "vcard-temp";
	};
	[1] = {
		["name"] = "FN";
		["attr"] = {
			["xmlns"] = "vcard-temp";
		};
		[1] = "Juliet Capulet";
	};
	[2] = {
		["name"] = "NICKNAME";
		["attr"] = {
			["xmlns"] = "vcard-temp";
		};
		[1] = "Giuli\195\169tta";
	};
	[3] = {
		["name"] = "PHOTO";
		["attr"] = {
			["xmlns"] = "vcard-temp";
		};
		[1] = {
			["name"] = "TYPE";
			["attr"] = {
				["xmlns"] = "vcard-temp";
			};
			[1] = "image/png";
		};
		[2] = {
			["name"] = "BINVAL";
			["attr"] = {
				["xmlns"] = "vcard-temp";
			};
			[1] = "iVBORw0KGgoAAAANSUhEUg==";
		};
	};
};
"#,
    );
    dir.write(
        "localhost/private/juliet.dat",
        r#"return {
	["storage:storage:bookmarks"] = {
		["name"] = "storage";
		["attr"] = {
			["xmlns"] = "storage:bookmarks";
		};
		[1] = {
			["name"] = "conference";
			["attr"] = {
				["xmlns"] = "storage:bookmarks";
				["jid"] = "balcony@rooms.localhost";
				["autojoin"] = "true";
				["name"] = "The balcony";
			};
			[1] = {
				["name"] = "nick";
				["attr"] = {
					["xmlns"] = "storage:bookmarks";
				};
				[1] = "Jules";
			};
		};
	};
	["roster:roster:delimiter"] = {
		["name"] = "roster";
		["attr"] = {
			["xmlns"] = "roster:delimiter";
		};
		[1] = "::";
	};
};
"#,
    );
    dir.write(
        "localhost/blocklist/juliet.dat",
        r#"return {
	[false] = {
		["created"] = 1700000000;
		["modified"] = 1700000100;
	};
	["tybalt@localhost"] = 1700000100;
	["montague.example"] = true;
	["paris@verona.example/court"] = 1700000050;
};
"#,
    );
}

#[test]
fn vcards_private_xml_and_block_lists_are_imported() {
    let dir = Dir::new("modules");
    juliet(&dir);
    let import = import(&dir);
    assert!(import.warnings.is_empty(), "{:?}", import.warnings);
    assert_eq!(
        module_data(&import, "juliet@localhost"),
        [
            entry("blocklist", "montague.example", ""),
            entry("blocklist", "paris@verona.example/court", ""),
            entry("blocklist", "tybalt@localhost", ""),
            entry(
                "private",
                "roster:roster:delimiter",
                "<roster xmlns='roster:delimiter'>::</roster>"
            ),
            entry(
                "private",
                "storage:storage:bookmarks",
                "<storage xmlns='storage:bookmarks'><conference autojoin='true' \
                 jid='balcony@rooms.localhost' name='The balcony'><nick>Jules</nick>\
                 </conference></storage>"
            ),
            entry(
                "vcard",
                "vcard",
                "<vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN><NICKNAME>Giuliétta</NICKNAME>\
                 <PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgoAAAANSUhEUg==</BINVAL></PHOTO></vCard>"
            ),
        ]
    );
}

#[test]
fn what_cannot_be_carried_is_skipped_and_named() {
    let dir = Dir::new("module-warnings");
    dir.write("localhost/accounts/amy.dat", "return { password = \"pw\" }");
    // A vCard-4 element where a vcard-temp one belongs.
    dir.write(
        "localhost/vcard/amy.dat",
        r#"return { name = "vcard", attr = { xmlns = "urn:ietf:params:xml:ns:vcard-4.0" } }"#,
    );
    // Fragments: one with a control character and a foreign attribute, one that is not a
    // stanza, one without a namespace of its own (it takes the key's).
    dir.write(
        "localhost/private/amy.dat",
        r#"return {
            ["a:urn:example:a"] = { name = "a", attr = { xmlns = "urn:example:a", ["urn:x\1y"] = "1" }, "t\7" },
            ["b:urn:example:b"] = { attr = {} },
            ["c:urn:example:c"] = { name = "c", attr = {} },
            [1] = { name = "d" },
        }"#,
    );
    dir.write(
        "localhost/blocklist/amy.dat",
        r#"return { [false] = { created = 1 }, ["@bad"] = true, ["gone@localhost"] = false, [2] = true }"#,
    );
    // Files of other stores, and a file without an account.
    dir.write("localhost/offline/amy.list", "");
    dir.write("localhost/offline/bob.list", "");
    dir.write("localhost/pep%5fdata/amy.dat", "return {}");
    dir.write("localhost/vcard/nobody.dat", "return {}");
    let import = import(&dir);
    assert_eq!(
        module_data(&import, "amy@localhost"),
        [
            entry(
                "private",
                "a:urn:example:a",
                "<a xmlns='urn:example:a'>t</a>"
            ),
            entry("private", "c:urn:example:c", "<c xmlns='urn:example:c'/>"),
        ]
    );
    assert_eq!(
        import.warnings,
        [
            "amy@localhost, vcard: skipped <vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'>, which is not a vcard-temp <vCard/>",
            "amy@localhost, private: removed 1 character(s) not allowed in XML from the fragment \"a:urn:example:a\"",
            "amy@localhost, private: dropped 1 attribute(s) in other namespaces from the fragment \"a:urn:example:a\"",
            "amy@localhost, private: skipped the fragment \"b:urn:example:b\": an element's name \"\" is missing or not an XML name",
            "amy@localhost, private: skipped an entry whose key is not a string",
            "amy@localhost, blocklist: skipped \"@bad\", not a JID",
            "amy@localhost, blocklist: skipped an entry whose key is not a JID",
            "host localhost: skipped Prosody's \"offline\" store (2 file(s)), which is not imported",
            "host localhost: skipped Prosody's \"pep_data\" store (1 file(s)), which is not imported",
            "host localhost: skipped vcard/nobody.dat, which has no account",
        ]
    );
}

#[test]
fn a_file_that_is_not_a_table_literal_stops_the_import() {
    let dir = Dir::new("module-refused");
    dir.write("localhost/accounts/amy.dat", "return { password = \"pw\" }");
    dir.write("localhost/blocklist/amy.dat", "return { os.exit() }");
    let err = read_dir(dir.path(), None).expect_err("refused").to_string();
    assert!(
        err.ends_with("amy.dat: at byte 9: only constants are allowed here, not names"),
        "{err}"
    );
}
