//! Interface names and the version rules that decide which implementation
//! serves which request.
//!
//! An interface is named the way WIT names it: `namespace:package/interface`,
//! optionally followed by `@version` (the version of its package). The rules
//! are the seed registry's: majors equal (for `0.x`, majors and minors equal),
//! the implementation's minor at least the requested one, patch ignored, and a
//! request without a version matches any implementation.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use semver::Version;

use crate::error::Error;

/// The versions of one interface that may replace one another behind one
/// slot: package, interface, and the major version (or for `0.x`, major and
/// minor). Shares its strings with the name it came from.
pub(crate) type Line = (Arc<str>, Arc<str>, Option<(u64, u64)>);

/// The name of a WIT interface, with the version of its package if it has one.
///
/// ```
/// use hotslot::InterfaceName;
/// let name: InterfaceName = "demo:text/filter@1.2.0".parse().unwrap();
/// assert_eq!(name.package(), "demo:text");
/// assert_eq!(name.interface(), "filter");
/// assert_eq!(name.version().map(|v| v.minor), Some(2));
/// assert_eq!(name.to_string(), "demo:text/filter@1.2.0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InterfaceName {
    // Shared, not owned: a name is copied into every slot, route, event and
    // answer about it, several times per reload.
    package: Arc<str>,
    interface: Arc<str>,
    version: Option<Version>,
}

impl InterfaceName {
    /// `namespace:package`, e.g. `demo:text`.
    ///
    /// ```
    /// let name: hotslot::InterfaceName = "demo:text/filter@1.2.0".parse()?;
    /// assert_eq!(name.package(), "demo:text");
    /// # Ok::<(), hotslot::Error>(())
    /// ```
    pub fn package(&self) -> &str {
        &self.package
    }

    /// The interface's own name inside its package, e.g. `filter`.
    ///
    /// ```
    /// let name: hotslot::InterfaceName = "demo:text/filter@1.2.0".parse()?;
    /// assert_eq!(name.interface(), "filter");
    /// # Ok::<(), hotslot::Error>(())
    /// ```
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The package version, if the name carries one.
    ///
    /// ```
    /// let name: hotslot::InterfaceName = "demo:text/filter@1.2.0".parse()?;
    /// assert_eq!(name.version().map(|v| v.to_string()).as_deref(), Some("1.2.0"));
    /// let plain: hotslot::InterfaceName = "demo:text/filter".parse()?;
    /// assert!(plain.version().is_none());
    /// # Ok::<(), hotslot::Error>(())
    /// ```
    pub fn version(&self) -> Option<&Version> {
        self.version.as_ref()
    }

    /// `namespace:package/interface`, without the version.
    ///
    /// ```
    /// let name: hotslot::InterfaceName = "demo:text/filter@1.2.0".parse()?;
    /// assert_eq!(name.unversioned(), "demo:text/filter");
    /// # Ok::<(), hotslot::Error>(())
    /// ```
    pub fn unversioned(&self) -> String {
        format!("{}/{}", self.package, self.interface)
    }

    /// True if an implementation exporting `self` can serve `request`.
    ///
    /// ```
    /// use hotslot::{InterfaceName, Request};
    /// let exported: InterfaceName = "demo:text/filter@1.2.0".parse()?;
    /// let serves = |request: &str| Ok::<_, hotslot::Error>(exported.serves(&request.parse::<Request>()?));
    /// assert!(serves("demo:text/filter@1")?); // any 1.x at or above 1.0.0
    /// assert!(serves("demo:text/filter@1.1")?); // a minor version adds, never takes away
    /// assert!(!serves("demo:text/filter@1.3")?);
    /// assert!(!serves("demo:text/filter@2")?);
    /// assert!(serves("demo:text/filter")?); // no version: any
    /// # Ok::<(), hotslot::Error>(())
    /// ```
    pub fn serves(&self, request: &Request) -> bool {
        self.package == request.name.package
            && self.interface == request.name.interface
            && match (&self.version, &request.name.version) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some(have), Some(want)) => version_serves(have, want),
            }
    }

    /// Whether `self` is in the version line `request` names (in any line of
    /// the interface, when `request` gives no version).
    pub(crate) fn in_line_of(&self, request: &Request) -> bool {
        let wanted = request.name();
        match wanted.version() {
            None => self.package == wanted.package && self.interface == wanted.interface,
            Some(_) => self.line() == wanted.line(),
        }
    }

    /// The set of versions that may replace one another behind one slot: the
    /// major version, or for `0.x` the major and minor. Two names with the same
    /// line are the same interface, released at different times.
    pub(crate) fn line(&self) -> Line {
        (
            self.package.clone(),
            self.interface.clone(),
            self.line_version(),
        )
    }

    /// Whether this name is in `line`; unlike comparing with
    /// [`InterfaceName::line`], it touches no reference count.
    pub(crate) fn is_in(&self, line: &Line) -> bool {
        self.line_version() == line.2 && self.interface == line.1 && self.package == line.0
    }

    fn line_version(&self) -> Option<(u64, u64)> {
        self.version.as_ref().map(|v| match v.major {
            0 => (0, v.minor),
            major => (major, u64::MAX),
        })
    }

    /// Parses a name whose version may be partial (`@1` is `@1.0.0`, `@1.2` is
    /// `@1.2.0`), as a request may write it.
    fn parse(text: &str, partial_version: bool) -> Result<Self, Error> {
        let bad = |why: &str| Error::BadInterfaceName {
            text: text.to_string(),
            reason: why.to_string(),
        };
        let (path, version) = match text.split_once('@') {
            Some((path, version)) => (path, Some(version)),
            None => (text, None),
        };
        let (package, interface) = path
            .split_once('/')
            .ok_or_else(|| bad("expected `namespace:package/interface`"))?;
        let (namespace, package_name) = package
            .split_once(':')
            .ok_or_else(|| bad("expected `namespace:package` before the `/`"))?;
        for (what, word) in [
            ("namespace", namespace),
            ("package", package_name),
            ("interface", interface),
        ] {
            if !is_wit_identifier(word) {
                return Err(bad(&format!(
                    "the {what} `{word}` is not a WIT identifier (lower-case words joined by `-`)"
                )));
            }
        }
        let version = match version {
            None => None,
            Some(v) => Some(parse_version(v, partial_version).map_err(|e| bad(&e))?),
        };
        Ok(InterfaceName {
            package: package.into(),
            interface: interface.into(),
            version,
        })
    }
}

impl FromStr for InterfaceName {
    type Err = Error;

    /// Parses `ns:pkg/iface` or `ns:pkg/iface@x.y.z` (a full semver version).
    fn from_str(text: &str) -> Result<Self, Error> {
        Self::parse(text, false)
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.package, self.interface)?;
        if let Some(v) = &self.version {
            write!(f, "@{v}")?;
        }
        Ok(())
    }
}

/// What a caller asks the registry for: an interface, and optionally the
/// lowest version it needs.
///
/// ```
/// use hotslot::{InterfaceName, Request};
/// let request: Request = "demo:text/filter@1.1".parse().unwrap();
/// let v1_2: InterfaceName = "demo:text/filter@1.2.0".parse().unwrap();
/// let v2_0: InterfaceName = "demo:text/filter@2.0.0".parse().unwrap();
/// assert!(v1_2.serves(&request));
/// assert!(!v2_0.serves(&request));
/// // Without a version, any implementation of the interface will do.
/// assert!(v2_0.serves(&"demo:text/filter".parse().unwrap()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    name: InterfaceName,
}

impl Request {
    /// The interface asked for, with the requested version if any.
    ///
    /// ```
    /// let request: hotslot::Request = "demo:text/filter@1.2".parse()?;
    /// assert_eq!(request.name().to_string(), "demo:text/filter@1.2.0");
    /// # Ok::<(), hotslot::Error>(())
    /// ```
    pub fn name(&self) -> &InterfaceName {
        &self.name
    }
}

impl FromStr for Request {
    type Err = Error;

    /// Parses `ns:pkg/iface`, `ns:pkg/iface@1`, `@1.2` or `@1.2.3`.
    fn from_str(text: &str) -> Result<Self, Error> {
        Ok(Request {
            name: InterfaceName::parse(text, true)?,
        })
    }
}

impl From<InterfaceName> for Request {
    fn from(name: InterfaceName) -> Self {
        Request { name }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.name.fmt(f)
    }
}

/// The seed registry's compatibility rule between an implementation's version
/// (`have`) and a requested one (`want`).
fn version_serves(have: &Version, want: &Version) -> bool {
    if have.major != want.major {
        return false;
    }
    if have.major == 0 {
        // Before 1.0 every minor release may break: it is its own line.
        return have.minor == want.minor;
    }
    have.minor >= want.minor
}

fn parse_version(text: &str, partial: bool) -> Result<Version, String> {
    if text.is_empty() {
        return Err("no version after `@`".into());
    }
    let full = match text.split('.').count() {
        1 if partial => format!("{text}.0.0"),
        2 if partial => format!("{text}.0"),
        _ => text.to_string(),
    };
    Version::parse(&full).map_err(|e| format!("bad version `{text}`: {e}"))
}

/// WIT identifiers: words of lower-case letters and digits (each starting with
/// a letter) joined by single dashes. Upper-case words are allowed by WIT but
/// never mixed within a word; we accept them whole.
/// Whether `word` is a WIT identifier: lower-case (or upper-case) words of
/// letters and digits joined by `-`, each starting with a letter.
pub(crate) fn is_wit_identifier(word: &str) -> bool {
    !word.is_empty()
        && word.split('-').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
                && (part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                    || part
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serves(have: &str, want: &str) -> bool {
        let have: InterfaceName = format!("a:b/c@{have}").parse().unwrap();
        let want: Request = format!("a:b/c@{want}").parse().unwrap();
        have.serves(&want)
    }

    #[test]
    fn version_rules() {
        assert!(serves("1.2.0", "1.0.0"));
        assert!(serves("1.2.0", "1.2.9"), "patch is ignored");
        assert!(!serves("1.2.0", "1.3.0"));
        assert!(!serves("1.2.0", "2.0.0"));
        assert!(!serves("2.0.0", "1.0.0"));
        assert!(serves("0.2.5", "0.2.0"));
        assert!(!serves("0.3.0", "0.2.0"));
        assert!(!serves("0.2.0", "0.3.0"));
        assert!(serves("1.2.0", "1"));
        assert!(serves("1.2.0", "1.2"));
    }

    #[test]
    fn versioned_request_never_matches_unversioned_export() {
        let have: InterfaceName = "a:b/c".parse().unwrap();
        assert!(!have.serves(&"a:b/c@1".parse().unwrap()));
        assert!(have.serves(&"a:b/c".parse().unwrap()));
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in [
            "", "a", "a:b", "a/b", "a:b/", "a:b/c@", "a:b/c@x", "A b:c/d", "a:b/c@1",
        ] {
            assert!(bad.parse::<InterfaceName>().is_err(), "{bad:?} parsed");
        }
        assert!("a:b/c@1".parse::<Request>().is_ok());
        let empty = "a:b/c@".parse::<Request>().unwrap_err().to_string();
        assert!(empty.contains("no version after `@`"), "{empty}");
    }
}
