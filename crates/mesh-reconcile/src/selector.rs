//! `--selector` evaluated in the operator rather than by the apiserver.
//!
//! A sharded instance watches every MeshService (so a managed Gateway aggregates every
//! contributor, whatever shard it is in) but reconciles only those its selector matches, and it
//! must notice when one it holds stops matching. So the selector string is parsed here, with the
//! grammar `kubectl -l` and the apiserver accept: comma-separated requirements `key`, `!key`,
//! `key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`.

use std::collections::{BTreeMap, BTreeSet};

use kube::core::{Expression, Selector, SelectorExt};

/// A label selector the operator can evaluate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    source: String,
    selector: Selector,
}

/// A selector string that is not a label selector.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid label selector {selector:?}: {reason}")]
pub struct SelectorError {
    /// The selector as given.
    pub selector: String,
    /// What is wrong with it.
    pub reason: String,
}

impl LabelSelector {
    /// Parses a selector string.
    pub fn parse(source: &str) -> Result<Self, SelectorError> {
        let fail = |reason: String| SelectorError {
            selector: source.to_string(),
            reason,
        };
        let mut expressions = Vec::new();
        for requirement in split_requirements(source).map_err(fail)? {
            expressions.push(parse_requirement(&requirement).map_err(fail)?);
        }
        Ok(Self {
            source: source.to_string(),
            selector: expressions.into_iter().collect(),
        })
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.matches(labels)
    }

    /// The selector as it was given.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Splits at the commas that separate requirements (not those inside `in (a,b)`).
fn split_requirements(source: &str) -> Result<Vec<String>, String> {
    let mut requirements = Vec::new();
    let mut current = String::new();
    let mut in_set = false;
    for ch in source.chars() {
        match ch {
            '(' if in_set => return Err("nested '('".into()),
            '(' => in_set = true,
            ')' if !in_set => return Err("')' without '('".into()),
            ')' => in_set = false,
            ',' if !in_set => {
                requirements.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    if in_set {
        return Err("'(' without ')'".into());
    }
    requirements.push(current);
    let requirements: Vec<String> = requirements
        .into_iter()
        .map(|r| r.trim().to_string())
        .collect();
    if requirements.iter().any(String::is_empty) {
        return Err("empty requirement".into());
    }
    Ok(requirements)
}

fn parse_requirement(requirement: &str) -> Result<Expression, String> {
    if let Some(key) = requirement.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(label_key(key)?));
    }
    for (operator, build) in [
        (
            "!=",
            Expression::NotEqual as fn(String, String) -> Expression,
        ),
        ("==", Expression::Equal),
        ("=", Expression::Equal),
    ] {
        if let Some((key, value)) = requirement.split_once(operator) {
            return Ok(build(label_key(key)?, label_value(value)?));
        }
    }
    if let Some(open) = requirement.find('(') {
        let head = requirement[..open].trim();
        let values = requirement[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| format!("{requirement:?}: text after ')'"))?;
        let values: BTreeSet<String> = values
            .split(',')
            .map(label_value)
            .collect::<Result<_, _>>()?;
        let (key, operator) = head.rsplit_once(char::is_whitespace).ok_or_else(|| {
            format!("{requirement:?}: expected 'key in (...)' or 'key notin (...)'")
        })?;
        return match operator {
            "in" => Ok(Expression::In(label_key(key)?, values)),
            "notin" => Ok(Expression::NotIn(label_key(key)?, values)),
            other => Err(format!("{requirement:?}: unknown operator {other:?}")),
        };
    }
    Ok(Expression::Exists(label_key(requirement)?))
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn label_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && key.len() <= 253 + 1 + 63;
    if valid {
        Ok(key.to_string())
    } else {
        Err(format!("{key:?} is not a label key"))
    }
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_`, `.`, alphanumeric at both ends.
fn label_value(value: &str) -> Result<String, String> {
    let value = value.trim();
    let valid = value.is_empty()
        || (value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
    if valid {
        Ok(value.to_string())
    } else {
        Err(format!("{value:?} is not a label value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selects(selector: &str, pairs: &[(&str, &str)]) -> bool {
        LabelSelector::parse(selector)
            .unwrap_or_else(|e| panic!("{e}"))
            .matches(&labels(pairs))
    }

    #[test]
    fn equality_requirements_select_like_the_apiserver() {
        assert!(selects("team=a", &[("team", "a")]));
        assert!(selects("team==a", &[("team", "a"), ("tier", "web")]));
        assert!(!selects("team=a", &[("team", "b")]));
        assert!(!selects("team=a", &[]));
        // `!=` also selects objects without the label, as the apiserver does.
        assert!(selects("team!=a", &[]));
        assert!(!selects("team!=a", &[("team", "a")]));
    }

    #[test]
    fn set_and_existence_requirements_select_like_the_apiserver() {
        assert!(selects("tier in (web, api)", &[("tier", "api")]));
        assert!(!selects("tier in (web,api)", &[("tier", "db")]));
        assert!(selects("tier notin (db)", &[]));
        assert!(selects("example.com/shard", &[("example.com/shard", "")]));
        assert!(selects("!legacy", &[("team", "a")]));
        assert!(!selects("!legacy", &[("legacy", "yes")]));
    }

    #[test]
    fn every_requirement_of_a_list_must_hold() {
        let selector = "team=a, tier in (web,api), !legacy";
        assert!(selects(selector, &[("team", "a"), ("tier", "web")]));
        assert!(!selects(
            selector,
            &[("team", "a"), ("tier", "web"), ("legacy", "1")]
        ));
        assert!(!selects(selector, &[("team", "b"), ("tier", "web")]));
    }

    #[test]
    fn malformed_selectors_are_refused_with_the_reason() {
        for bad in [
            "",
            "team=a,",
            "tier in (web",
            "tier in web)",
            "tier of (web)",
            "team=a b",
            "-team=a",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let error = LabelSelector::parse("team=a,,tier=web").expect_err("empty requirement");
        assert_eq!(error.reason, "empty requirement");
    }
}
