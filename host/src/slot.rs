//! Stable slots: the host-side place one implementation of one interface
//! lives at — an interface (within one version line) and a plugin name —
//! which every handle to it reaches. A slot serves through its plugin's
//! [`Program`]: the slots of one plugin share its instances, and a reload
//! moves them all in one step.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Failed};
use crate::generation::{Generation, Resident};
use crate::program::{HeldLane, NoLane, Program, SlotId};
use crate::sync::lock;
use crate::version::{InterfaceName, Line, Request};

/// The host-side place of one implementation of one interface. It outlives
/// every generation put behind it.
pub(crate) struct Slot {
    id: SlotId,
    line: Line,
    /// The interface this slot last served, for messages once it is empty.
    last_interface: Mutex<InterfaceName>,
    program: Arc<Program>,
}

impl Slot {
    pub(crate) fn new(id: SlotId, interface: InterfaceName, program: Arc<Program>) -> Self {
        Slot {
            id,
            line: interface.line(),
            last_interface: Mutex::new(interface),
            program,
        }
    }

    pub(crate) fn id(&self) -> SlotId {
        self.id
    }

    pub(crate) fn line(&self) -> &Line {
        &self.line
    }

    /// The plugin's name.
    pub(crate) fn name(&self) -> &str {
        self.program.name()
    }

    pub(crate) fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// Runs `f` on the generation and export serving this slot now, without
    /// touching an instance.
    pub(crate) fn peek<R>(&self, f: impl FnOnce(&Generation, usize) -> R) -> Option<R> {
        self.program
            .peek(|published| {
                let export = published.export_for(self.id)?;
                Some(f(&published.generation, export))
            })
            .flatten()
    }

    /// The interface, with the version that serves it now (or served it last).
    pub(crate) fn interface(&self) -> InterfaceName {
        match self.peek(|g, export| g.exported(export).name().clone()) {
            Some(name) => {
                *lock(&self.last_interface) = name.clone();
                name
            }
            None => lock(&self.last_interface).clone(),
        }
    }

    /// True if a call made now would reach an implementation serving `request`.
    pub(crate) fn serves(&self, request: &Request) -> bool {
        self.peek(|g, export| g.exported(export).name().serves(request))
            .unwrap_or(false)
    }

    /// Runs `f` on a lane of the plugin, for this slot's export.
    #[inline]
    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&Generation, usize, &mut Resident) -> Result<R, Failed>,
    ) -> Result<R, Failed> {
        let mut held = self.acquire()?;
        self.serve(&mut held, f)
    }

    /// A lane of the plugin, to make calls on.
    #[inline]
    pub(crate) fn acquire(&self) -> Result<HeldLane<'_>, Failed> {
        self.program.acquire().map_err(|why| self.no_lane(why))
    }

    /// The error of a call that waited `waited` for an instance in vain.
    #[cold]
    pub(crate) fn busy(&self, waited: std::time::Duration) -> Failed {
        self.no_lane(NoLane::Busy { waited })
    }

    /// Why no lane could be had, in words naming this slot.
    #[cold]
    fn no_lane(&self, why: NoLane) -> Failed {
        Box::new(match why {
            NoLane::Reentered { instances } => Error::Reentered {
                interface: self.interface().to_string(),
                name: self.name().to_string(),
                instances,
            },
            NoLane::Busy { waited } => Error::Busy {
                interface: self.interface().to_string(),
                name: self.name().to_string(),
                waited_ms: waited.as_millis().try_into().unwrap_or(u64::MAX),
            },
        })
    }

    /// Runs `f` for this slot on a lane already held.
    #[inline]
    pub(crate) fn serve<R>(
        &self,
        held: &mut HeldLane<'_>,
        f: impl FnOnce(&Generation, usize, &mut Resident) -> Result<R, Failed>,
    ) -> Result<R, Failed> {
        self.program.serve(held, self.id, f, || self.unavailable())
    }

    /// The error of a call to this slot while nothing serves it.
    #[cold]
    pub(crate) fn unavailable(&self) -> Failed {
        Box::new(Error::Unavailable {
            interface: self.interface().to_string(),
            name: self.name().to_string(),
        })
    }
}

/// Whether a selection would rather have `slot` than another it accepts.
pub(crate) type Preference = Box<dyn Fn(&Slot) -> bool + Send + Sync>;

/// What a [`Registry::get`](crate::Registry::get) handle reaches: the slot
/// the registry currently selects for its request, re-pointed as
/// implementations come and go.
///
/// The slot is read on every call through the handle, so it is a plain
/// pointer (one load), not an `ArcSwap` (whose load costs a fence here): the
/// selection keeps every slot it has pointed at alive in `kept`. A registry
/// never drops a slot, so `kept` holds at most the slots that ever served
/// the request.
pub(crate) struct Selection {
    request: Request,
    /// Only this plugin's slots, when set.
    name: Option<String>,
    /// Which accepted slots come first, when set: an import prefers a
    /// provider whose functions have the types it expects.
    prefers: Option<Preference>,
    /// The slot selected now, one of `kept`; null for none.
    slot: AtomicPtr<Slot>,
    kept: Mutex<Vec<Arc<Slot>>>,
}

impl Selection {
    pub(crate) fn new(request: Request, name: Option<String>, prefers: Option<Preference>) -> Self {
        Selection {
            request,
            name,
            prefers,
            slot: AtomicPtr::new(std::ptr::null_mut()),
            kept: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn request(&self) -> &Request {
        &self.request
    }

    /// The plugin this selection is limited to, if it is.
    pub(crate) fn named(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether `slot` may be selected: it serves the request (and is of the
    /// plugin named, if one is).
    pub(crate) fn accepts(&self, slot: &Slot) -> bool {
        self.name.as_deref().is_none_or(|name| slot.name() == name) && slot.serves(&self.request)
    }

    /// The slot to select among `slots` (in the registry's order): the
    /// first accepted one it prefers, else the first accepted one.
    pub(crate) fn choose<'a>(&self, slots: &'a [Arc<Slot>]) -> Option<&'a Arc<Slot>> {
        let mut accepted = slots.iter().filter(|slot| self.accepts(slot));
        match &self.prefers {
            None => accepted.next(),
            Some(prefers) => {
                let first = accepted.clone().next();
                accepted.find(|slot| prefers(slot)).or(first)
            }
        }
    }

    /// The slot selected now, as an owned reference.
    pub(crate) fn current(&self) -> Option<Arc<Slot>> {
        let slot = self.slot.load(Ordering::Acquire);
        if slot.is_null() {
            return None;
        }
        // SAFETY: a non-null pointer here came from an `Arc<Slot>` that
        // `kept` holds until the selection itself goes, and the selection
        // outlives `&self`: the count is at least one while it is raised.
        unsafe {
            Arc::increment_strong_count(slot);
            Some(Arc::from_raw(slot))
        }
    }

    /// The slot selected now.
    #[inline]
    pub(crate) fn slot(&self) -> Option<&Slot> {
        let slot = self.slot.load(Ordering::Acquire);
        // SAFETY: a non-null pointer here came from an `Arc<Slot>` that
        // `kept` holds until the selection itself goes, and the selection
        // outlives `&self`.
        unsafe { slot.as_ref() }
    }

    /// Visits every slot this selection keeps alive (every one it ever
    /// pointed at), without touching their reference counts.
    pub(crate) fn each_kept(&self, f: impl FnMut(&Arc<Slot>)) {
        lock(&self.kept).iter().for_each(f);
    }

    pub(crate) fn point_at(&self, slot: Option<Arc<Slot>>) {
        let pointer = match slot {
            Some(slot) => {
                let pointer = Arc::as_ptr(&slot).cast_mut();
                let mut kept = lock(&self.kept);
                if !kept.iter().any(|k| Arc::ptr_eq(k, &slot)) {
                    kept.push(slot);
                }
                pointer
            }
            None => std::ptr::null_mut(),
        };
        self.slot.store(pointer, Ordering::Release);
    }
}
