//! Finding an exported function by name, on every dynamic call.
//!
//! A dynamic call names its function (`handle.call("add", …)`), so each
//! call looks it up. Walking the plugin's export lists for it (interfaces,
//! each with its functions, each name a string of its own) touched five
//! far-apart pieces of memory per call, each a likely cache miss once the
//! guest has run; a call forwarded to another plugin measured ~2 % faster
//! with no lookup at all. A generation keeps this flat copy instead: one
//! piece of memory, each entry holding its name's first bytes, so a short
//! name is found without reading anything else.
//!
//! Each generation makes its own copy (an allocation per swap, two when a
//! name is longer than an entry holds; not measurable in a swap's ~10 µs)
//! rather than sharing one made at compile time: allocated beside the
//! generation, it measured ~2 % faster on a forwarded call than a shared
//! copy (5 processes each, and alone), which is within what a build's code
//! layout moves these figures by; it is the simpler of the two either way.

use crate::loader::ExportedInterface;
use crate::values::passes_resources;

/// Every exported function of a plugin, in one slice.
pub(crate) struct FunctionIndex {
    /// In export order.
    entries: Box<[Entry]>,
    /// The names longer than an entry holds, one after another.
    long: Box<[u8]>,
    /// Where the entries of each of the first exports begin (the last one
    /// for all that come after it): a call to a plugin's later interface
    /// does not read the earlier ones' entries.
    starts: [usize; STARTS],
}

const STARTS: usize = 8;

/// Where one exported function is, and how many values it takes and gives.
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    export: u32,
    position: u32,
    params: u32,
    results: u32,
    len: u32,
    /// Where the rest of a long name is in `long`.
    rest: u32,
    /// The name's first bytes (all of a name this long or shorter).
    head: [u8; HEAD],
}

const HEAD: usize = 16;

/// The count of parameters a function that passes resource handles is
/// given: no dynamic call has as many arguments, so such a call goes the
/// way of a miscounted one, off the call's path, where it is refused (see
/// [`Entry::passes_resources`]) at no cost to other calls.
const PASSES_RESOURCES: u32 = u32::MAX;

impl Entry {
    /// Its position among its interface's functions.
    pub(crate) fn position(&self) -> usize {
        self.position as usize
    }

    /// How many values it takes; for one that passes resource handles,
    /// more than any call gives.
    pub(crate) fn params(&self) -> usize {
        self.params as usize
    }

    /// Whether it takes or gives a resource handle: a dynamic call cannot
    /// give one of the instance's, and one it answered would stay in the
    /// instance's table, out of the caller's reach.
    pub(crate) fn passes_resources(&self) -> bool {
        self.params == PASSES_RESOURCES
    }

    /// How many values it gives.
    pub(crate) fn results(&self) -> usize {
        self.results as usize
    }
}

impl FunctionIndex {
    /// The functions of a plugin's exported interfaces.
    pub(crate) fn of(exports: &[ExportedInterface]) -> Self {
        let functions = exports.iter().enumerate().flat_map(|(export, exported)| {
            exported
                .functions()
                .iter()
                .enumerate()
                .map(move |(position, f)| Function {
                    export,
                    position,
                    name: f.name(),
                    params: match passes_resources(f.ty()) {
                        true => PASSES_RESOURCES as usize,
                        false => f.param_count(),
                    },
                    results: f.result_count(),
                })
        });
        Self::new(functions)
    }

    fn new<'a>(functions: impl IntoIterator<Item = Function<'a>>) -> Self {
        let mut entries = Vec::new();
        let mut long = Vec::new();
        for function in functions {
            let name = function.name.as_bytes();
            let mut head = [0; HEAD];
            let (first, rest) = name.split_at(name.len().min(HEAD));
            head[..first.len()].copy_from_slice(first);
            // Counts this large do not occur (a component's functions and
            // their parameters are far fewer): such a function would be left
            // out, and a call to it fail as one to a function not there.
            let fits = |n: usize| u32::try_from(n).ok();
            let (Some(export), Some(position), Some(params), Some(results), Some(len), Some(at)) = (
                fits(function.export),
                fits(function.position),
                fits(function.params),
                fits(function.results),
                fits(name.len()),
                fits(long.len()),
            ) else {
                continue;
            };
            long.extend_from_slice(rest);
            entries.push(Entry {
                export,
                position,
                params,
                results,
                len,
                rest: at,
                head,
            });
        }
        entries.sort_by_key(|e| e.export);
        let starts =
            std::array::from_fn(|export| entries.partition_point(|e| (e.export as usize) < export));
        FunctionIndex {
            entries: entries.into(),
            long: long.into(),
            starts,
        }
    }

    /// Function `name` of export number `export`.
    #[inline]
    pub(crate) fn find(&self, export: usize, name: &str) -> Option<Entry> {
        let name = name.as_bytes();
        let from = self.starts[export.min(STARTS - 1)];
        self.entries
            .get(from..)?
            .iter()
            .take_while(|e| e.export as usize <= export)
            .find(|e| {
                e.export as usize == export
                    && e.len as usize == name.len()
                    && same(&e.head, name)
                    && (name.len() <= HEAD || self.rest_is(e, &name[HEAD..]))
            })
            .copied()
    }

    /// Whether a long name's bytes past the head are `rest`.
    #[cold]
    fn rest_is(&self, entry: &Entry, rest: &[u8]) -> bool {
        let start = entry.rest as usize;
        self.long.get(start..start + rest.len()) == Some(rest)
    }
}

/// One function, as [`FunctionIndex::new`] takes it.
struct Function<'a> {
    export: usize,
    position: usize,
    name: &'a str,
    params: usize,
    results: usize,
}

/// Whether `name` begins with `head`'s bytes, as far as both go: compared
/// here byte by byte (names are short) rather than through a call to
/// `memcmp`.
#[inline]
fn same(head: &[u8; HEAD], name: &[u8]) -> bool {
    head.iter().zip(name).all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_are_found_and_near_misses_are_not() {
        let long = "a-function-name-longer-than-sixteen-bytes";
        let longer = format!("{long}x");
        let other = format!("{}y", &long[..long.len() - 1]);
        let names = ["add", long, &longer, "sixteen-bytes-ab", "sixteen-bytes-ac"];
        let index = FunctionIndex::new(names.iter().enumerate().map(|(position, name)| Function {
            export: 0,
            position,
            name,
            params: position,
            results: 1,
        }));
        let found = |name: &str| index.find(0, name).map(|e| e.position());
        assert_eq!(found("add"), Some(0));
        assert_eq!(found(long), Some(1));
        assert_eq!(found(&longer), Some(2));
        assert_eq!(found("sixteen-bytes-ab"), Some(3));
        assert_eq!(found("sixteen-bytes-ac"), Some(4));
        assert_eq!(found(&other), None);
        assert_eq!(found("ad"), None);
        assert_eq!(found("adds"), None);
        assert_eq!(found(""), None);
        assert_eq!(index.find(1, "add").map(|e| e.position()), None);
        let counts = index.find(0, long).map(|e| (e.params(), e.results()));
        assert_eq!(counts, Some((1, 1)));
    }

    #[test]
    fn each_export_is_searched_alone_and_a_long_near_miss_is_passed_over() {
        // Same length and first 16 bytes as the name after it; 17 bytes.
        let (near, name) = ("seventeen-bytes-a", "seventeen-bytes-b");
        let functions = [(0, "get"), (0, near), (0, name), (1, "get"), (1, name)];
        let mut positions = [0, 0];
        let index = FunctionIndex::new(functions.iter().map(|&(export, name)| {
            let position = positions[export];
            positions[export] += 1;
            Function {
                export,
                position,
                name,
                params: export,
                results: 0,
            }
        }));
        let found = |export, name| index.find(export, name).map(|e| (e.position(), e.params()));
        assert_eq!(found(0, "get"), Some((0, 0)));
        assert_eq!(found(1, "get"), Some((0, 1)));
        assert_eq!(found(0, name), Some((2, 0)));
        assert_eq!(found(1, name), Some((1, 1)));
        assert_eq!(found(0, near), Some((1, 0)));
        assert_eq!(found(1, near), None);
        assert_eq!(found(2, "get"), None);
    }

    #[test]
    fn functions_of_exports_past_the_first_eight_are_found_too() {
        let names: Vec<String> = (0..12).map(|e| format!("f{e}")).collect();
        // Given out of export order, as `new` may be.
        let index = FunctionIndex::new((0..24).rev().map(|i| Function {
            export: i % 12,
            position: i / 12,
            name: if i < 12 { "same" } else { &names[i % 12] },
            params: i,
            results: 0,
        }));
        for export in 0..12 {
            let found = |name: &str| {
                let found = index.find(export, name);
                found.map(|e| (e.position(), e.params()))
            };
            assert_eq!(found("same"), Some((0, export)), "export {export}");
            assert_eq!(found(&names[export]), Some((1, export + 12)));
            assert_eq!(found(&names[(export + 1) % 12]), None);
        }
        assert_eq!(index.find(12, "same").map(|e| e.position()), None);
    }
}
