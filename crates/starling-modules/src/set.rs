//! Modules, their registration, and the compiled [`ModuleSet`] the router consults.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use minidom::Element;
use starling_registry::SessionHandle;
use starling_stanza::{IqType, NS_DISCO_INFO, NS_DISCO_ITEMS, StanzaKind};

use crate::copies::{CopyMaker, Exchanged, MessageCopy};
use crate::disco::{Disco, DiscoInfo, DiscoTarget, Identity};
use crate::hooks::{
    BoxFuture, Hooked, Priority, Routed, RoutingPoint, StanzaHook, Verdict, kind_index,
};
use crate::iq::{AddressForm, IqHandler};

/// The software name in the server's disco identity (and XEP-0092).
pub const SOFTWARE_NAME: &str = "Starling";

/// A feature module: one XEP family, registered once at start-up.
pub trait Module: Send + Sync + 'static {
    /// The module's name in `[modules]` and in logs.
    fn name(&self) -> &'static str;

    /// Declare what the module answers, observes and contributes.
    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>);
}

/// The stages of a c2s stream that offer features (RFC 6120 §4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamStage {
    /// Before authentication, next to the SASL mechanisms (after TLS where TLS is required).
    Unauthenticated,
    /// After authentication, next to resource binding.
    Authenticated,
}

/// A session life-cycle event (Prosody's `resource-bind`, `presence/initial`,
/// `resource-unbind`; later `hibernated` and `resumed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEvent {
    /// The session bound a resource: it is a connected resource.
    Bound,
    /// The resource sent initial presence: it is an available resource.
    Available,
    /// The resource sent unavailable presence, or ended while available.
    Unavailable,
    /// The session is gone from the registry.
    Ended,
    /// A new connection resumed the session (XEP-0198 §5): same session, new stream, so
    /// per-stream state (XEP-0352's client state, say) starts afresh.
    Resumed,
}

/// Reacts to session life-cycle events.
pub trait SessionObserver: Send + Sync {
    /// `session` went through `event`. Runs on the session's own task; keep it short.
    fn on_session<'a>(
        &'a self,
        event: SessionEvent,
        session: &'a SessionHandle,
    ) -> BoxFuture<'a, ()>;
}

/// Handles first-level elements other than stanzas (nonzas) of one namespace that a bound
/// session sends, such as XEP-0352's `<active/>` and `<inactive/>`.
pub trait StreamElementHandler: Send + Sync {
    /// `session` sent `element`. Runs on the session's own task before it reads on, so what
    /// the handler queues for the session goes out before the answers to later requests
    /// (XEP-0352 §5.1).
    fn on_element<'a>(
        &'a self,
        session: &'a SessionHandle,
        element: &'a Element,
    ) -> BoxFuture<'a, ()>;
}

/// Derives extra stream features and disco nodes from the final disco#info of the server,
/// once every module has registered (XEP-0115 capabilities hash it).
pub trait DiscoFinisher: Send + Sync {
    /// Stream features to add, and disco nodes whose info is the server's own.
    fn finish(&self, server: &DiscoInfo) -> Finished;
}

/// What a [`DiscoFinisher`] adds.
#[derive(Debug, Default)]
pub struct Finished {
    /// Stream features for both stages.
    pub stream_features: Vec<Element>,
    /// Nodes that answer disco#info with the server's own info.
    pub server_nodes: Vec<String>,
}

/// Why the set of modules could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModuleError {
    /// Two modules answer the same request.
    #[error(
        "modules {first} and {second} both answer {form:?} iq {iq_type:?} in namespace {namespace}"
    )]
    IqConflict {
        /// The module registered first.
        first: &'static str,
        /// The module registered second.
        second: &'static str,
        /// The address form.
        form: AddressForm,
        /// Get or set.
        iq_type: IqType,
        /// The payload namespace.
        namespace: &'static str,
    },
    /// The same module name twice.
    #[error("module {0} is registered twice")]
    Duplicate(&'static str),
    /// Two modules accept stream elements of the same namespace.
    #[error("modules {first} and {second} both accept stream elements in namespace {namespace}")]
    StreamElementConflict {
        /// The module registered first.
        first: &'static str,
        /// The module registered second.
        second: &'static str,
        /// The namespace.
        namespace: &'static str,
    },
}

/// Hands a module's registrations to the set being built.
pub struct Registrar<'b> {
    module: &'static str,
    builder: &'b mut Builder,
}

#[derive(Default)]
struct Builder {
    iq: HashMap<&'static str, IqSlots>,
    conflicts: Vec<ModuleError>,
    hooks: Vec<RegisteredHook>,
    observers: Vec<Arc<dyn SessionObserver>>,
    copy_makers: Vec<Arc<dyn CopyMaker>>,
    stream_elements: StreamElements,
    features: [Vec<Element>; 2],
    server: DiscoInfo,
    account: DiscoInfo,
    finishers: Vec<Arc<dyn DiscoFinisher>>,
}

/// Handlers of one namespace by (form, get/set).
#[derive(Default)]
struct IqSlots {
    slots: [Option<(&'static str, Arc<dyn IqHandler>)>; 6],
}

fn slot(form: AddressForm, iq_type: IqType) -> Option<usize> {
    let column = match iq_type {
        IqType::Get => 0,
        IqType::Set => 1,
        IqType::Result | IqType::Error => return None,
    };
    Some(form.index() * 2 + column)
}

/// Stream element handlers by namespace, with the module that registered each.
type StreamElements = Vec<(&'static str, &'static str, Arc<dyn StreamElementHandler>)>;

struct RegisteredHook {
    point: RoutingPoint,
    kind: StanzaKind,
    priority: Priority,
    module: &'static str,
    order: usize,
    hook: Arc<dyn StanzaHook>,
}

impl Registrar<'_> {
    /// Answer iq `iq_type` requests to `form` whose payload is in `namespace`.
    pub fn iq(
        &mut self,
        form: AddressForm,
        iq_type: IqType,
        namespace: &'static str,
        handler: Arc<dyn IqHandler>,
    ) {
        let Some(index) = slot(form, iq_type) else {
            return;
        };
        let slots = self.builder.iq.entry(namespace).or_default();
        match &slots.slots[index] {
            Some((first, _)) => self.builder.conflicts.push(ModuleError::IqConflict {
                first,
                second: self.module,
                form,
                iq_type,
                namespace,
            }),
            None => slots.slots[index] = Some((self.module, handler)),
        }
    }

    /// Answer both gets and sets to `form` in `namespace` with one handler.
    pub fn iq_get_set(
        &mut self,
        form: AddressForm,
        namespace: &'static str,
        handler: Arc<dyn IqHandler>,
    ) {
        self.iq(form, IqType::Get, namespace, Arc::clone(&handler));
        self.iq(form, IqType::Set, namespace, handler);
    }

    /// Run `hook` for stanzas of `kinds` at `point`, in `priority` order.
    pub fn hook(
        &mut self,
        point: RoutingPoint,
        kinds: &[StanzaKind],
        priority: Priority,
        hook: Arc<dyn StanzaHook>,
    ) {
        for &kind in kinds {
            let order = self.builder.hooks.len();
            self.builder.hooks.push(RegisteredHook {
                point,
                kind,
                priority,
                module: self.module,
                order,
                hook: Arc::clone(&hook),
            });
        }
    }

    /// Be told of session life-cycle events.
    pub fn session_events(&mut self, observer: Arc<dyn SessionObserver>) {
        self.builder.observers.push(observer);
    }

    /// Be told of each message a local account sent or received, to make copies of it for the
    /// account's other resources (see [`CopyMaker`]).
    pub fn copies(&mut self, maker: Arc<dyn CopyMaker>) {
        self.builder.copy_makers.push(maker);
    }

    /// Accept first-level elements in `namespace` from bound sessions and hand them to
    /// `handler` (any other non-stanza element stays a stream error).
    pub fn stream_element(
        &mut self,
        namespace: &'static str,
        handler: Arc<dyn StreamElementHandler>,
    ) {
        let elements = &mut self.builder.stream_elements;
        match elements.iter().find(|(ns, _, _)| *ns == namespace) {
            Some((_, first, _)) => {
                let conflict = ModuleError::StreamElementConflict {
                    first,
                    second: self.module,
                    namespace,
                };
                self.builder.conflicts.push(conflict);
            }
            None => elements.push((namespace, self.module, handler)),
        }
    }

    /// Offer `feature` in the stream features of `stage`.
    pub fn stream_feature(&mut self, stage: StreamStage, feature: Element) {
        self.builder.features[stage_index(stage)].push(feature);
    }

    /// Advertise `var` in the disco#info of `target`.
    pub fn disco_feature(&mut self, target: DiscoTarget, var: &str) {
        let info = match target {
            DiscoTarget::Server => &mut self.builder.server,
            DiscoTarget::Account => &mut self.builder.account,
        };
        info.features.insert(var.to_owned());
    }

    /// Add an identity to the disco#info of `target`.
    pub fn disco_identity(&mut self, target: DiscoTarget, identity: Identity) {
        let info = match target {
            DiscoTarget::Server => &mut self.builder.server,
            DiscoTarget::Account => &mut self.builder.account,
        };
        info.identities.insert(identity);
    }

    /// Add an XEP-0128 extension form to the server's disco#info.
    pub fn disco_form(&mut self, form: Element) {
        self.builder.server.forms.push(form);
    }

    /// Derive features from the final disco#info (see [`DiscoFinisher`]).
    pub fn after_disco(&mut self, finisher: Arc<dyn DiscoFinisher>) {
        self.builder.finishers.push(finisher);
    }
}

fn stage_index(stage: StreamStage) -> usize {
    match stage {
        StreamStage::Unauthenticated => 0,
        StreamStage::Authenticated => 1,
    }
}

/// The enabled modules, compiled into lookup tables. Built once at start-up and shared; a
/// stanza that no module registered for costs one table lookup and no allocation.
pub struct ModuleSet {
    names: Vec<&'static str>,
    iq: HashMap<&'static str, IqSlots>,
    /// Hooks by point and kind, each list in run order.
    hooks: [[Vec<Arc<dyn StanzaHook>>; 3]; 4],
    observers: Vec<Arc<dyn SessionObserver>>,
    copy_makers: Vec<Arc<dyn CopyMaker>>,
    stream_elements: StreamElements,
    features: [Vec<Element>; 2],
    disco: Arc<Disco>,
}

impl ModuleSet {
    /// Register `modules` in order (XEP-0030 disco is always present: it answers from what the
    /// others registered).
    pub fn build(modules: Vec<Arc<dyn Module>>) -> Result<Self, ModuleError> {
        let mut builder = Builder::default();
        let mut names = Vec::with_capacity(modules.len());
        for module in modules {
            let name = module.name();
            if names.contains(&name) {
                return Err(ModuleError::Duplicate(name));
            }
            names.push(name);
            module.register(&mut Registrar {
                module: name,
                builder: &mut builder,
            });
        }
        if let Some(conflict) = builder.conflicts.into_iter().next() {
            return Err(conflict);
        }
        // XEP-0030 itself, and the identities every server and account has (§3.1 requires
        // at least one).
        let mut server_identity = Identity::new("server", "im");
        server_identity.name = Some(SOFTWARE_NAME.to_owned());
        builder.server.identities.insert(server_identity);
        builder
            .account
            .identities
            .insert(Identity::new("account", "registered"));
        for info in [&mut builder.server, &mut builder.account] {
            info.features.insert(NS_DISCO_INFO.to_owned());
            info.features.insert(NS_DISCO_ITEMS.to_owned());
        }
        let mut server_nodes = BTreeSet::new();
        for finisher in &builder.finishers {
            let finished = finisher.finish(&builder.server);
            for feature in finished.stream_features {
                builder.features[0].push(feature.clone());
                builder.features[1].push(feature);
            }
            server_nodes.extend(finished.server_nodes);
        }
        let disco = Arc::new(Disco {
            server: builder.server,
            account: builder.account,
            server_nodes,
        });
        for namespace in [NS_DISCO_INFO, NS_DISCO_ITEMS] {
            let slots = builder.iq.entry(namespace).or_default();
            for form in [AddressForm::Server, AddressForm::Bare] {
                for iq_type in [IqType::Get, IqType::Set] {
                    if let Some(index) = slot(form, iq_type) {
                        let handler: Arc<dyn IqHandler> = disco.clone();
                        slots.slots[index] = Some(("disco", handler));
                    }
                }
            }
        }
        let mut hooks = builder.hooks;
        // Higher priority first; ties by module name, then registration order, so the order
        // never depends on anything but the registrations.
        hooks.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.module.cmp(b.module))
                .then(a.order.cmp(&b.order))
        });
        let mut table: [[Vec<Arc<dyn StanzaHook>>; 3]; 4] = Default::default();
        for registered in hooks {
            table[registered.point.index()][kind_index(registered.kind)].push(registered.hook);
        }
        Ok(Self {
            names,
            iq: builder.iq,
            hooks: table,
            observers: builder.observers,
            copy_makers: builder.copy_makers,
            stream_elements: builder.stream_elements,
            features: builder.features,
            disco,
        })
    }

    /// The names of the registered modules, in registration order.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// The handler for iq `iq_type` to `form` with a payload in `namespace`, if any.
    pub fn iq_handler(
        &self,
        form: AddressForm,
        iq_type: IqType,
        namespace: &str,
    ) -> Option<&Arc<dyn IqHandler>> {
        let index = slot(form, iq_type)?;
        self.iq.get(namespace)?.slots[index]
            .as_ref()
            .map(|(_, handler)| handler)
    }

    /// Whether any hook runs for `kind` at `point`.
    pub fn has_hooks(&self, point: RoutingPoint, kind: StanzaKind) -> bool {
        !self.hooks[point.index()][kind_index(kind)].is_empty()
    }

    /// Run the hooks for `routed`'s point and kind until one decides.
    pub async fn run_hooks(&self, routed: &mut Routed<'_>) -> Verdict {
        for hook in &self.hooks[routed.point.index()][kind_index(routed.kind)] {
            let verdict = match hook.on_stanza(routed) {
                Hooked::Now(verdict) => verdict,
                Hooked::Later(future) => future.await,
            };
            match verdict {
                Verdict::Continue => {}
                decided => return decided,
            }
        }
        Verdict::Continue
    }

    /// Tell every observer that `session` went through `event`.
    pub async fn session_event(&self, event: SessionEvent, session: &SessionHandle) {
        for observer in &self.observers {
            observer.on_session(event, session).await;
        }
    }

    /// Whether any module makes copies of messages.
    pub fn makes_copies(&self) -> bool {
        !self.copy_makers.is_empty()
    }

    /// Whether any [`CopyMaker`] might copy a message of `account` (a bare JID, as a string).
    pub fn copies_for(&self, account: &str) -> bool {
        self.copy_makers
            .iter()
            .any(|maker| maker.copies_for(account))
    }

    /// The copies every [`CopyMaker`] wants of `message`, in registration order.
    pub fn copies(&self, message: &Exchanged<'_>) -> Vec<MessageCopy> {
        let mut copies = Vec::new();
        for maker in &self.copy_makers {
            maker.copies(message, &mut copies);
        }
        copies
    }

    /// The namespaces of the stream elements modules accept (for the stream engine's
    /// `StreamConfig::stream_element_namespaces`).
    pub fn stream_element_namespaces(&self) -> Vec<String> {
        self.stream_elements
            .iter()
            .map(|(namespace, _, _)| (*namespace).to_owned())
            .collect()
    }

    /// Hand `element`, which `session` sent, to the module that accepts its namespace; an
    /// element nobody accepts is ignored (the engine lets through only registered ones).
    pub async fn stream_element(&self, session: &SessionHandle, element: &Element) {
        let handler = self
            .stream_elements
            .iter()
            .find(|(namespace, _, _)| element.has_ns(*namespace));
        if let Some((_, _, handler)) = handler {
            handler.on_element(session, element).await;
        }
    }

    /// The stream features modules offer at `stage`.
    pub fn stream_features(&self, stage: StreamStage) -> &[Element] {
        &self.features[stage_index(stage)]
    }

    /// The server's disco#info as answered.
    pub fn server_info(&self) -> &DiscoInfo {
        &self.disco.server
    }

    /// An account's disco#info as answered on its behalf.
    pub fn account_info(&self) -> &DiscoInfo {
        &self.disco.account
    }
}

impl RoutingPoint {
    /// Every point, in the order a stanza meets them.
    pub fn all() -> [RoutingPoint; 4] {
        RoutingPoint::ALL
    }
}
