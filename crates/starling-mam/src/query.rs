//! Archive queries (XEP-0313 1.1 §4, §5; XEP-0059 1.0 result set management): the request
//! read into a [`Query`], the query form, and the result and `<fin/>` elements. Pure: what to
//! fetch and how to answer, decided here; fetching is the module's.

use minidom::Element;
use starling_stanza::{NS_CLIENT, NS_DATA, StanzaErrorCondition, datetime};
use starling_storage::{ArchiveFilter, PageFrom, WithFilter};
use uuid::Uuid;

use crate::NS_MAM;

/// XEP-0059 result set management.
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";
/// XEP-0297 stanza forwarding.
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0122 data forms validation.
pub const NS_XDATA_VALIDATE: &str = "http://jabber.org/protocol/xdata-validate";

/// A query, read from `<query xmlns='urn:xmpp:mam:2'/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The `queryid` to echo in every result (§4).
    pub query_id: Option<String>,
    /// The form's `with`, `start`, `end`, `after-id` and `before-id`, and RSM's `after` or
    /// `before` (both bounds of one kind are applied together: the tighter wins).
    pub filter: ArchiveFilter,
    /// The form's `ids` (#extended): exactly these messages, when given.
    pub ids: Option<Vec<Uuid>>,
    /// Which end the page is taken from: RSM `<before/>` pages backwards from the newest.
    pub from: PageFrom,
    /// RSM `<max/>`, if given.
    pub max: Option<usize>,
    /// `<flip-page/>` (#extended): send the page newest first.
    pub flip: bool,
    /// The form's filters alone, without RSM's paging: what a `<count/>` counts.
    form_filter: ArchiveFilter,
    /// Ids the request names that must be in the archive, or the answer is `item-not-found`
    /// (§4.1.3, §4.3.2): `after-id`, `before-id`, RSM `after`/`before`. The `ids` are checked
    /// when fetched.
    pub must_exist: Vec<Uuid>,
}

/// A query refused: the condition and a text for the requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// RFC 6120 §8.3.3 condition.
    pub condition: StanzaErrorCondition,
    /// What was wrong, in English.
    pub text: String,
}

impl Refusal {
    fn new(condition: StanzaErrorCondition, text: impl Into<String>) -> Self {
        Self {
            condition,
            text: text.into(),
        }
    }

    fn bad_request(text: impl Into<String>) -> Self {
        Self::new(StanzaErrorCondition::BadRequest, text)
    }

    fn item_not_found() -> Self {
        Self::new(
            StanzaErrorCondition::ItemNotFound,
            "no message with that id in the archive",
        )
    }
}

impl Query {
    /// Read an iq set's `<query/>` payload.
    pub fn parse(query: &Element) -> Result<Self, Refusal> {
        if query.attr("node").is_some() {
            // XEP-0313 §7.1.3: nodes are pubsub archives; a user archive has none.
            return Err(Refusal::new(
                StanzaErrorCondition::ItemNotFound,
                "a user archive has no nodes",
            ));
        }
        let mut parsed = Query {
            query_id: query.attr("queryid").map(str::to_owned),
            filter: ArchiveFilter::default(),
            ids: None,
            from: PageFrom::Oldest,
            max: None,
            flip: false,
            form_filter: ArchiveFilter::default(),
            must_exist: Vec::new(),
        };
        for child in query.children() {
            match (child.ns().as_str(), child.name()) {
                (NS_DATA, "x") => parsed.read_form(child)?,
                (NS_RSM, "set") => parsed.read_rsm(child)?,
                (NS_MAM, "flip-page") => parsed.flip = true,
                _ => {}
            }
        }
        Ok(parsed)
    }

    fn read_form(&mut self, form: &Element) -> Result<(), Refusal> {
        if !matches!(form.attr("type"), None | Some("submit")) {
            return Err(Refusal::bad_request(
                "the query form must be of type submit",
            ));
        }
        for field in form.children().filter(|child| child.is("field", NS_DATA)) {
            let Some(var) = field.attr("var") else {
                return Err(Refusal::bad_request("a form field has no var"));
            };
            let values: Vec<String> = field
                .children()
                .filter(|value| value.is("value", NS_DATA))
                .map(|value| value.text().trim().to_owned())
                .filter(|value| !value.is_empty())
                .collect();
            let single = || match values.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some(one.as_str())),
                _ => Err(Refusal::bad_request(format!("field {var} takes one value"))),
            };
            match var {
                "FORM_TYPE" => {
                    if single()?.is_some_and(|value| value != NS_MAM) {
                        return Err(Refusal::bad_request(format!(
                            "the FORM_TYPE must be {NS_MAM}"
                        )));
                    }
                }
                "with" => {
                    if let Some(value) = single()? {
                        let jid = jid::Jid::new(value).map_err(|_| {
                            Refusal::bad_request(format!("with is not a JID: {value}"))
                        })?;
                        let with = WithFilter {
                            bare: jid.to_bare(),
                            resource: jid.resource().map(|r| r.as_str().to_owned()),
                        };
                        self.filter.with = Some(with.clone());
                        self.form_filter.with = Some(with);
                    }
                }
                "start" | "end" => {
                    if let Some(value) = single()? {
                        let ms = datetime::parse_ms(value).map_err(|_| {
                            Refusal::bad_request(format!(
                                "{var} is not a XEP-0082 date and time: {value}"
                            ))
                        })?;
                        for filter in [&mut self.filter, &mut self.form_filter] {
                            if var == "start" {
                                filter.start_ms = Some(ms);
                            } else {
                                filter.end_ms = Some(ms);
                            }
                        }
                    }
                }
                "after-id" => {
                    if let Some(value) = single()? {
                        let id = archive_id(value)?;
                        self.form_filter.after_id = Some(id);
                        self.after(id);
                    }
                }
                "before-id" => {
                    if let Some(value) = single()? {
                        let id = archive_id(value)?;
                        self.form_filter.before_id = Some(id);
                        self.before(id);
                    }
                }
                "ids" => {
                    self.ids = Some(
                        values
                            .iter()
                            .map(|value| archive_id(value))
                            .collect::<Result<_, _>>()?,
                    );
                }
                other => {
                    // §4.1.5: a field the server does not know.
                    return Err(Refusal::new(
                        StanzaErrorCondition::FeatureNotImplemented,
                        format!("unknown query field {other}"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn read_rsm(&mut self, set: &Element) -> Result<(), Refusal> {
        let mut after = None;
        let mut before = None;
        for child in set.children() {
            if child.ns() != NS_RSM {
                continue;
            }
            let text = child.text();
            let text = text.trim();
            match child.name() {
                "max" => {
                    self.max =
                        Some(text.parse().map_err(|_| {
                            Refusal::bad_request(format!("max is not a count: {text}"))
                        })?)
                }
                "after" if text.is_empty() => {
                    return Err(Refusal::bad_request("after needs an id"));
                }
                "after" => after = Some(archive_id(text)?),
                "before" if text.is_empty() => before = Some(None),
                "before" => before = Some(Some(archive_id(text)?)),
                "index" => {
                    // XEP-0059 §2.6: paging by index is optional; ids page exactly.
                    return Err(Refusal::new(
                        StanzaErrorCondition::FeatureNotImplemented,
                        "paging by index is not supported; page with after or before",
                    ));
                }
                _ => {}
            }
        }
        match (after, before) {
            (Some(_), Some(_)) => Err(Refusal::bad_request(
                "RSM after and before together are undefined; use after-id and before-id",
            )),
            (Some(after), None) => {
                self.after(after);
                Ok(())
            }
            (None, Some(before)) => {
                self.from = PageFrom::Newest;
                if let Some(before) = before {
                    self.before(before);
                }
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }

    /// Whether the full result set is the whole archive (no form filter, no ids): its count is
    /// the archive's, known without counting.
    pub fn is_unfiltered(&self) -> bool {
        self.ids.is_none() && self.form_filter == ArchiveFilter::default()
    }

    /// The form's filters without RSM's paging bounds.
    pub fn form_filter(&self) -> ArchiveFilter {
        self.form_filter.clone()
    }

    fn after(&mut self, id: Uuid) {
        self.must_exist.push(id);
        self.filter.after_id = Some(self.filter.after_id.map_or(id, |known| known.max(id)));
    }

    fn before(&mut self, id: Uuid) {
        self.must_exist.push(id);
        self.filter.before_id = Some(self.filter.before_id.map_or(id, |known| known.min(id)));
    }
}

/// An id as the archive hands them out. Anything else cannot be in the archive, which §4.1.3
/// answers with `item-not-found`.
fn archive_id(text: &str) -> Result<Uuid, Refusal> {
    Uuid::parse_str(text)
        .ok()
        .filter(starling_storage::is_archive_id)
        .ok_or_else(Refusal::item_not_found)
}

/// The fields a query may use (§4.1.5): an iq get's answer.
pub fn form() -> Element {
    let field = |var: &str, kind: &str| {
        Element::builder("field", NS_DATA)
            .attr(minidom::rxml::xml_ncname!("type").to_owned(), kind)
            .attr(minidom::rxml::xml_ncname!("var").to_owned(), var)
            .build()
    };
    let mut form_type = field("FORM_TYPE", "hidden");
    form_type.append_child(Element::builder("value", NS_DATA).append(NS_MAM).build());
    let mut ids = field("ids", "list-multi");
    ids.append_child(
        Element::builder("validate", NS_XDATA_VALIDATE)
            .attr(
                minidom::rxml::xml_ncname!("datatype").to_owned(),
                "xs:string",
            )
            .append(Element::builder("open", NS_XDATA_VALIDATE).build())
            .build(),
    );
    let x = Element::builder("x", NS_DATA)
        .attr(minidom::rxml::xml_ncname!("type").to_owned(), "form")
        .append(form_type)
        .append(field("with", "jid-single"))
        .append(field("start", "text-single"))
        .append(field("end", "text-single"))
        .append(field("before-id", "text-single"))
        .append(field("after-id", "text-single"))
        .append(ids)
        .build();
    Element::builder("query", NS_MAM).append(x).build()
}

/// One result message (§4.2): `stored` forwarded with its archive time, to the requesting
/// resource `to`, from the archive `from`.
pub fn result_message(
    to: &str,
    from: &str,
    query_id: Option<&str>,
    id: &Uuid,
    stamp_ms: u64,
    stored: Element,
) -> Element {
    let mut result = Element::builder("result", NS_MAM)
        .attr(minidom::rxml::xml_ncname!("id").to_owned(), id.to_string())
        .build();
    if let Some(query_id) = query_id {
        starling_stanza::set_attr(
            &mut result,
            minidom::rxml::xml_ncname!("queryid"),
            Some(query_id),
        );
    }
    result.append_child(
        Element::builder("forwarded", NS_FORWARD)
            .append(
                Element::builder("delay", starling_stanza::NS_DELAY)
                    .attr(
                        minidom::rxml::xml_ncname!("stamp").to_owned(),
                        datetime::format_ms(stamp_ms),
                    )
                    .build(),
            )
            .append(stored)
            .build(),
    );
    Element::builder("message", NS_CLIENT)
        .attr(minidom::rxml::xml_ncname!("to").to_owned(), to)
        .attr(minidom::rxml::xml_ncname!("from").to_owned(), from)
        .attr(minidom::rxml::xml_ncname!("id").to_owned(), id.to_string())
        .append(result)
        .build()
}

/// The `<fin/>` ending a query (§4.3): the page's first and last ids (chronological, whatever
/// the sending order), the count when known, and `complete` when no further page exists in
/// the direction paged.
pub fn fin(complete: bool, ends: Option<(Uuid, Uuid)>, count: Option<u64>) -> Element {
    let mut set = Element::builder("set", NS_RSM).build();
    if let Some((first, last)) = ends {
        set.append_child(
            Element::builder("first", NS_RSM)
                .append(first.to_string())
                .build(),
        );
        set.append_child(
            Element::builder("last", NS_RSM)
                .append(last.to_string())
                .build(),
        );
    }
    if let Some(count) = count {
        set.append_child(
            Element::builder("count", NS_RSM)
                .append(count.to_string())
                .build(),
        );
    }
    let mut fin = Element::builder("fin", NS_MAM).append(set).build();
    if complete {
        starling_stanza::set_attr(
            &mut fin,
            minidom::rxml::xml_ncname!("complete"),
            Some("true"),
        );
    }
    fin
}

/// The `<metadata/>` answer (§6): the archive's first and last ids and times, or empty.
pub fn metadata(bounds: Option<(Uuid, Uuid)>) -> Element {
    let mut metadata = Element::builder("metadata", NS_MAM).build();
    if let Some((first, last)) = bounds {
        for (name, id) in [("start", first), ("end", last)] {
            metadata.append_child(
                Element::builder(name, NS_MAM)
                    .attr(minidom::rxml::xml_ncname!("id").to_owned(), id.to_string())
                    .attr(
                        minidom::rxml::xml_ncname!("timestamp").to_owned(),
                        datetime::format_ms(starling_storage::timestamp_ms(&id)),
                    )
                    .build(),
            );
        }
    }
    metadata
}

#[cfg(test)]
mod tests {
    use starling_storage::id_at;

    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().expect("test XML parses")
    }

    fn parse(xml: &str) -> Result<Query, Refusal> {
        Query::parse(&el(xml))
    }

    fn condition(xml: &str) -> StanzaErrorCondition {
        parse(xml).expect_err("refused").condition
    }

    const A: &str = "00000000-03e8-7101-8101-010101010101";
    const B: &str = "00000000-07d0-7202-8202-020202020202";

    #[test]
    fn an_empty_query_asks_for_the_oldest_of_everything() {
        let query = parse("<query xmlns='urn:xmpp:mam:2' queryid='f27'/>").expect("valid");
        assert_eq!(query.query_id.as_deref(), Some("f27"));
        assert_eq!(query.filter, ArchiveFilter::default());
        assert_eq!(
            (query.from, query.max, query.flip),
            (PageFrom::Oldest, None, false)
        );
        assert!(query.must_exist.is_empty() && query.ids.is_none());
    }

    #[test]
    fn the_form_fills_the_filter() {
        let query = parse(&format!(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
             <field var='with'><value>Juliet@Capulet.lit/balcony</value></field>\
             <field var='start'><value>2010-06-07T00:00:00Z</value></field>\
             <field var='end'><value>2010-07-07T13:23:54Z</value></field>\
             <field var='after-id'><value>{A}</value></field>\
             <field var='before-id'><value>{B}</value></field>\
             <field var='empty'/>\
             </x><flip-page/></query>"
        ));
        // An unknown field, even empty, is refused.
        assert_eq!(
            query.err().map(|refusal| refusal.condition),
            Some(StanzaErrorCondition::FeatureNotImplemented)
        );
        let query = parse(&format!(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
             <field var='with'><value>Juliet@Capulet.lit/balcony</value></field>\
             <field var='start'><value>2010-06-07T00:00:00Z</value></field>\
             <field var='end'><value>2010-07-07T13:23:54Z</value></field>\
             <field var='after-id'><value>{A}</value></field>\
             <field var='before-id'><value>{B}</value></field>\
             </x><flip-page/></query>"
        ))
        .expect("valid");
        let with = query.filter.with.clone().expect("with");
        assert_eq!(with.bare.as_str(), "juliet@capulet.lit");
        assert_eq!(with.resource.as_deref(), Some("balcony"));
        assert_eq!(query.filter.start_ms, Some(1_275_868_800_000));
        assert_eq!(query.filter.end_ms, Some(1_278_509_034_000));
        assert_eq!(query.filter.after_id, Some(id_at(1000, [1; 10])));
        assert_eq!(query.filter.before_id, Some(id_at(2000, [2; 10])));
        assert_eq!(query.must_exist.len(), 2);
        assert!(query.flip);
        assert_eq!(
            query.from,
            PageFrom::Oldest,
            "before-id does not page backwards"
        );
    }

    #[test]
    fn rsm_pages_and_the_tighter_bound_wins() {
        let query = parse(&format!(
            "<query xmlns='urn:xmpp:mam:2'>\
             <x xmlns='jabber:x:data' type='submit'><field var='after-id'><value>{A}</value></field></x>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>10</max><after>{B}</after></set></query>"
        ))
        .expect("valid");
        assert_eq!(query.max, Some(10));
        assert_eq!(query.filter.after_id, Some(id_at(2000, [2; 10])));
        assert_eq!(query.from, PageFrom::Oldest);
        let last = parse(
            "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>5</max><before/></set></query>",
        )
        .expect("valid");
        assert_eq!((last.from, last.max), (PageFrom::Newest, Some(5)));
        assert_eq!(last.filter.before_id, None);
        let before = parse(&format!(
            "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><before>{B}</before></set></query>"
        ))
        .expect("valid");
        assert_eq!(before.from, PageFrom::Newest);
        assert_eq!(before.must_exist, vec![id_at(2000, [2; 10])]);
    }

    #[test]
    fn bad_requests_get_their_conditions() {
        use StanzaErrorCondition::*;
        assert_eq!(
            condition(
                "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:1</value></field></x></query>"
            ),
            BadRequest
        );
        assert_eq!(
            condition(
                "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='start'><value>yesterday</value></field></x></query>"
            ),
            BadRequest
        );
        assert_eq!(
            condition(
                "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='with'><value>@x</value></field></x></query>"
            ),
            BadRequest
        );
        assert_eq!(
            condition(
                "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='form'/></query>"
            ),
            BadRequest
        );
        assert_eq!(
            condition(
                "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set></query>"
            ),
            BadRequest
        );
        assert_eq!(
            condition(&format!(
                "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><after>{A}</after><before/></set></query>"
            )),
            BadRequest
        );
        assert_eq!(
            condition(
                "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><index>3</index></set></query>"
            ),
            FeatureNotImplemented
        );
        assert_eq!(
            condition(
                "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><after>not-an-id</after></set></query>"
            ),
            ItemNotFound
        );
        assert_eq!(
            condition(
                "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='ids'><value>00000000-0000-4000-8000-000000000000</value></field></x></query>"
            ),
            ItemNotFound,
            "a v4 UUID is never an archive id"
        );
        assert_eq!(
            condition("<query xmlns='urn:xmpp:mam:2' node='x'/>"),
            ItemNotFound
        );
    }

    #[test]
    fn answers_have_the_shapes_of_the_examples() {
        let id = id_at(1_278_803_305_000, [1; 10]);
        let stored = el(
            "<message xmlns='jabber:client' from='witch@shakespeare.lit' to='macbeth@shakespeare.lit'><body>Hail to thee</body></message>",
        );
        assert_eq!(
            result_message(
                "macbeth@shakespeare.lit/x",
                "macbeth@shakespeare.lit",
                Some("f27"),
                &id,
                1_278_803_305_000,
                stored.clone()
            ),
            el(&format!(
                "<message xmlns='jabber:client' to='macbeth@shakespeare.lit/x' from='macbeth@shakespeare.lit' id='{id}'>\
                 <result xmlns='urn:xmpp:mam:2' queryid='f27' id='{id}'>\
                 <forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25.000Z'/>\
                 <message xmlns='jabber:client' from='witch@shakespeare.lit' to='macbeth@shakespeare.lit'><body>Hail to thee</body></message>\
                 </forwarded></result></message>"
            ))
        );
        let first = id_at(1, [0; 10]);
        assert_eq!(
            fin(true, Some((first, id)), Some(20)),
            el(&format!(
                "<fin xmlns='urn:xmpp:mam:2' complete='true'><set xmlns='http://jabber.org/protocol/rsm'>\
                 <first>{first}</first><last>{id}</last><count>20</count></set></fin>"
            ))
        );
        assert_eq!(
            fin(false, None, None),
            el("<fin xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'/></fin>")
        );
        assert_eq!(
            metadata(Some((first, id))),
            el(&format!(
                "<metadata xmlns='urn:xmpp:mam:2'><start id='{first}' timestamp='1970-01-01T00:00:00.001Z'/>\
                 <end id='{id}' timestamp='2010-07-10T23:08:25.000Z'/></metadata>"
            ))
        );
        assert_eq!(metadata(None), el("<metadata xmlns='urn:xmpp:mam:2'/>"));
        let form = form();
        let vars: Vec<&str> = form
            .children()
            .flat_map(|x| x.children())
            .filter_map(|field| field.attr("var"))
            .collect();
        assert_eq!(
            vars,
            [
                "FORM_TYPE",
                "with",
                "start",
                "end",
                "before-id",
                "after-id",
                "ids"
            ]
        );
    }
}
