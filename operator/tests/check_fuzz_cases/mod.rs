//! Inputs for the robustness runs of `check` (the small one in `tests/check_fuzz.rs`, the
//! ≥ 100k-case one in `benches/check_fuzz.rs`): random bytes, and real manifests mutated the way
//! hand edits and bad merges break YAML.

use proptest::prelude::*;

/// Real, valid manifests to mutate: the sample mesh and a few shapes the reader special-cases.
pub fn seeds() -> Vec<String> {
    let mut seeds: Vec<String> = [
        include_str!("../../../examples/istio/10-public-gateway.yaml"),
        include_str!("../../../examples/istio/20-shop.yaml"),
        include_str!("../../../examples/istio/30-payments.yaml"),
        include_str!("../../../examples/istio/40-blog.yaml"),
        include_str!("../../../examples/istio/50-meshservices.yaml"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    seeds.push(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a, namespace: x}\n  spec: {ports: [{name: http, port: 80}]}\n- apiVersion: networking.istio.io/v1\n  kind: VirtualService\n  metadata: {name: a, namespace: x, annotations: {galley.istio.io/analyze-suppress: IST0101}}\n  spec: {hosts: [a], gateways: [g], http: [{route: [{destination: {host: a, subset: s, port: {number: 80}}}], mirror: {host: m}}]}\n"
            .to_string(),
    );
    seeds.push(
        r#"[{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"e","namespace":"x"},"spec":{"hosts":["*.example.com"],"exportTo":["."],"ports":[{"number":443,"name":"tls","protocol":"TLS"}]}},{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"d"},"spec":{"host":"api.example.com","subsets":[null,{"name":null}]}}]"#
            .to_string(),
    );
    seeds
}

/// Fragments that YAML and Kubernetes give meaning to; inserted at random places.
const TOKENS: &[&str] = &[
    "\n---\n",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!binary ",
    "!!str ",
    "? ",
    "|\n  ",
    ">-\n  ",
    "\t",
    "\"",
    "'",
    "#",
    "null",
    "~",
    "",
    "\n  ",
    "\n    ",
    "kind: List\nitems:\n",
    "kind: ",
    "apiVersion: ",
    "metadata: ",
    "namespace: ",
    "name: ",
    "hosts: ",
    "gateways: [mesh, ",
    "host: ",
    "subset: ",
    "exportTo: [\".\"]",
    "- {}",
    "[null]",
    "99999999999999999999999",
    "-1",
    "1e309",
    "0x",
    "\u{feff}",
    "\u{0}",
    "\u{85}",
    "\u{2028}",
    "é",
    "*.",
    "*",
    "istio-system/",
    "/",
    "%YAML 1.2\n",
    "...\n",
    "{\"a\":",
    "}]",
];

/// One edit of a text.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Insert a YAML-meaningful fragment at a position (fraction of the length).
    Token(f64, usize),
    /// Insert raw bytes.
    Bytes(f64, Vec<u8>),
    /// Delete a range.
    Delete(f64, usize),
    /// Duplicate a range right after itself.
    Repeat(f64, usize, usize),
    /// Swap two lines.
    SwapLines(usize, usize),
    /// Change the indentation of a line.
    Indent(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (0.0..1.0f64, 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Token(at, token)),
        2 => (0.0..1.0f64, proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(at, bytes)| Mutation::Bytes(at, bytes)),
        2 => (0.0..1.0f64, 1..40usize).prop_map(|(at, len)| Mutation::Delete(at, len)),
        1 => (0.0..1.0f64, 1..60usize, 1..4usize).prop_map(|(at, len, times)| Mutation::Repeat(at, len, times)),
        1 => (0..200usize, 0..200usize).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        1 => (0..200usize, 0..9usize).prop_map(|(line, spaces)| Mutation::Indent(line, spaces)),
    ]
}

/// Applies the mutations to `seed`, byte-wise (so the result may well not be UTF-8).
pub fn mutate(seed: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.as_bytes().to_vec();
    for mutation in mutations {
        let at = |fraction: f64, len: usize| ((fraction * len as f64) as usize).min(len);
        match mutation {
            Mutation::Token(fraction, token) => {
                let pos = at(*fraction, bytes.len());
                let token = TOKENS[*token % TOKENS.len()].as_bytes();
                bytes.splice(pos..pos, token.iter().copied());
            }
            Mutation::Bytes(fraction, raw) => {
                let pos = at(*fraction, bytes.len());
                bytes.splice(pos..pos, raw.iter().copied());
            }
            Mutation::Delete(fraction, len) => {
                let pos = at(*fraction, bytes.len());
                let end = (pos + len).min(bytes.len());
                bytes.drain(pos..end);
            }
            Mutation::Repeat(fraction, len, times) => {
                let pos = at(*fraction, bytes.len());
                let end = (pos + len).min(bytes.len());
                let chunk: Vec<u8> = bytes[pos..end].to_vec();
                for _ in 0..*times {
                    bytes.splice(end..end, chunk.iter().copied());
                }
            }
            Mutation::SwapLines(a, b) => {
                let mut lines: Vec<Vec<u8>> =
                    bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
                let n = lines.len();
                if n > 1 {
                    lines.swap(a % n, b % n);
                }
                bytes = lines.join(&b'\n');
            }
            Mutation::Indent(line, spaces) => {
                let mut lines: Vec<Vec<u8>> =
                    bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
                let n = lines.len();
                if n > 0 {
                    let target = &mut lines[line % n];
                    let trimmed: Vec<u8> =
                        target.iter().copied().skip_while(|b| *b == b' ').collect();
                    *target = std::iter::repeat_n(b' ', *spaces).chain(trimmed).collect();
                }
                bytes = lines.join(&b'\n');
            }
        }
    }
    bytes
}

/// Either random bytes or a mutated seed, half and half.
pub fn input() -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds();
    let count = seeds.len();
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..512),
        1 => "(?s).{0,300}".prop_map(String::into_bytes),
        3 => (0..count, proptest::collection::vec(mutation(), 1..6))
            .prop_map(move |(seed, mutations)| mutate(&seeds[seed], &mutations)),
    ]
}

/// The in-process path of `check` over one input: read as UTF-8 (lossily, as the CLI rejects
/// the rest before the reader), parse, and if that worked ingest and check. Returns whether the
/// input parsed. Panics only if the code under test panics.
pub fn read_and_check(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    match mesh_integrity::parse_documents(&text, "fuzz.yaml") {
        Ok(objects) => {
            let mut engine =
                mesh_integrity::Engine::open_in_memory().expect("an in-memory engine opens");
            // Errors are fine (the engine may refuse an object); only panics are failures.
            if engine.ingest_batch(objects).is_ok() {
                let _ = engine.check();
            }
            true
        }
        Err(error) => {
            assert!(
                error.line >= 1 && error.column >= 1,
                "parse errors are located: {error:?}"
            );
            false
        }
    }
}
