//! Suppressions: Istio's `galley.istio.io/analyze-suppress` annotation and external ones.

use crate::error::Error;
use crate::finding::RuleInfo;
use crate::model::ObjectKey;

/// Whether the annotation value (comma-separated codes, or `*`) silences `code`.
pub fn annotation_suppresses(annotation: Option<&str>, code: &str) -> bool {
    annotation.is_some_and(|value| {
        value
            .split(',')
            .map(str::trim)
            .any(|c| c == "*" || c == code)
    })
}

/// An external suppression: a code (or rule name) everywhere, or on one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// Code (`IST0101`) or rule name (`vs-gateway-not-found`); `*` for all.
    pub code: String,
    /// `(kind, namespace, name)` when limited to one object (namespace `""` for cluster-scoped).
    pub target: Option<(String, String, String)>,
}

impl Suppression {
    /// Parses `CODE` or `CODE=Kind/namespace/name` (`CODE=Kind/name` for cluster-scoped objects).
    pub fn parse(spec: &str) -> Result<Suppression, Error> {
        let bad = || Error::BadSuppression(spec.to_string());
        let (code, target) = match spec.split_once('=') {
            None => (spec.trim(), None),
            Some((code, target)) => {
                let parts: Vec<&str> = target.trim().split('/').collect();
                let target = match parts.as_slice() {
                    [kind, ns, name] if !kind.is_empty() && !name.is_empty() => {
                        (kind.to_string(), ns.to_string(), name.to_string())
                    }
                    [kind, name] if !kind.is_empty() && !name.is_empty() => {
                        (kind.to_string(), String::new(), name.to_string())
                    }
                    _ => return Err(bad()),
                };
                (code.trim(), Some(target))
            }
        };
        if code.is_empty() || code.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(Suppression {
            code: code.to_string(),
            target,
        })
    }

    /// Whether it silences a finding of `rule` on `key`.
    pub fn matches(&self, rule: &RuleInfo, key: &ObjectKey) -> bool {
        let code_ok = self.code == "*" || self.code == rule.code || self.code == rule.name;
        code_ok
            && self.target.as_ref().is_none_or(|(kind, ns, name)| {
                *kind == key.kind && *ns == key.namespace && *name == key.name
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_codes_and_targets() {
        assert_eq!(Suppression::parse("IST0101").unwrap().target, None);
        let s = Suppression::parse("IST0101=VirtualService/shop/cart").unwrap();
        assert_eq!(
            s.target,
            Some(("VirtualService".into(), "shop".into(), "cart".into()))
        );
        assert!(Suppression::parse("IST0101=VirtualService").is_err());
        assert!(Suppression::parse("").is_err());
    }

    #[test]
    fn annotation_syntax_is_istios() {
        assert!(annotation_suppresses(Some("IST0101, IST0132"), "IST0132"));
        assert!(annotation_suppresses(Some("*"), "MSH0201"));
        assert!(!annotation_suppresses(Some("IST0101"), "IST0132"));
        assert!(!annotation_suppresses(None, "IST0132"));
    }
}
