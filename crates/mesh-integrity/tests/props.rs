//! Property tests over generated consistent meshes.

mod common;
use std::collections::BTreeSet;

use mesh_integrity::{Engine, ObjectKey, SourceObject};
use proptest::prelude::*;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct VsSpec {
    ns: usize,
    target: (usize, usize),
    gateway: Option<usize>,
    subset: bool,
}

#[derive(Debug, Clone)]
struct MeshSpec {
    namespaces: usize,
    services: usize,
    gateways: usize,
    vs: Vec<VsSpec>,
}

fn mesh_spec() -> impl Strategy<Value = MeshSpec> {
    (1usize..4, 1usize..4, 0usize..3).prop_flat_map(|(namespaces, services, gateways)| {
        let vs = (
            0..namespaces,
            (0..namespaces, 0..services),
            proptest::option::of(0..gateways.max(1)),
            any::<bool>(),
        )
            .prop_map(move |(ns, target, gateway, subset)| VsSpec {
                ns,
                target,
                gateway: if gateways == 0 { None } else { gateway },
                subset,
            });
        proptest::collection::vec(vs, 1..12).prop_map(move |vs| MeshSpec {
            namespaces,
            services,
            gateways,
            vs,
        })
    })
}

fn build(spec: &MeshSpec) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..spec.namespaces {
        out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns{i}")}}));
        for j in 0..spec.services {
            out.push(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("svc{j}"), "namespace": format!("ns{i}")},
                "spec": {"selector": {"app": format!("svc{j}")}, "ports": [{"name": "http", "port": 80}]}}));
            out.push(json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                "metadata": {"name": format!("svc{j}"), "namespace": format!("ns{i}")},
                "spec": {"host": format!("svc{j}"), "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}));
        }
    }
    for k in 0..spec.gateways {
        out.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": format!("gw{k}"), "namespace": "istio-system"},
            "spec": {"selector": {"istio": format!("ingress{k}")},
                     "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [format!("*.gw{k}.example.com")]}]}}));
    }
    for (idx, v) in spec.vs.iter().enumerate() {
        let (ti, tj) = v.target;
        let host = if ti == v.ns {
            format!("svc{tj}")
        } else {
            format!("svc{tj}.ns{ti}.svc.cluster.local")
        };
        let mut dest = json!({"host": host});
        if v.subset {
            dest["subset"] = json!("v1");
        }
        let (hosts, gateways) = match v.gateway {
            Some(k) => (
                json!([format!("v{idx}.gw{k}.example.com")]),
                json!([format!("istio-system/gw{k}")]),
            ),
            None => (json!([format!("v{idx}.mesh.example.com")]), json!([])),
        };
        out.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": format!("v{idx}"), "namespace": format!("ns{}", v.ns)},
            "spec": {"hosts": hosts, "gateways": gateways, "http": [{"route": [{"destination": dest}]}]}}));
    }
    out
}

fn findings(objects: &[Value]) -> Vec<mesh_integrity::Finding> {
    let mut engine = Engine::open_in_memory().unwrap();
    engine
        .ingest_batch(objects.iter().cloned().map(SourceObject::new))
        .unwrap();
    let mut f = engine.check().unwrap().findings;
    for x in &mut f {
        x.file = None;
    }
    f
}

fn summary(f: &[mesh_integrity::Finding]) -> BTreeSet<(String, String, String)> {
    f.iter()
        .map(|f| {
            (
                f.rule.clone(),
                f.resource.kind.clone(),
                format!("{}/{}", f.resource.namespace, f.resource.name),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_consistent_mesh_has_no_findings(spec in mesh_spec()) {
        let f = findings(&build(&spec));
        prop_assert!(f.is_empty(), "{:?}", summary(&f));
    }

    #[test]
    fn deleting_a_referenced_object_reports_exactly_its_referrers(spec in mesh_spec(), pick in any::<prop::sample::Index>(), what in 0u8..3) {
        let objects = build(&spec);
        let mut expected = BTreeSet::new();
        let removed: (String, String, String) = match what {
            0 => {
                let (i, j) = (pick.index(spec.namespaces), pick.index(spec.services));
                for (idx, v) in spec.vs.iter().enumerate() {
                    if v.target == (i, j) {
                        expected.insert(("vs-destination-host-not-found".into(), "VirtualService".into(), format!("ns{}/v{idx}", v.ns)));
                    }
                }
                expected.insert(("dr-host-unknown".into(), "DestinationRule".into(), format!("ns{i}/svc{j}")));
                ("Service".into(), format!("ns{i}"), format!("svc{j}"))
            }
            1 if spec.gateways > 0 => {
                let k = pick.index(spec.gateways);
                for (idx, v) in spec.vs.iter().enumerate() {
                    if v.gateway == Some(k) {
                        expected.insert(("vs-gateway-not-found".into(), "VirtualService".into(), format!("ns{}/v{idx}", v.ns)));
                        expected.insert(("vs-host-not-in-gateway".into(), "VirtualService".into(), format!("ns{}/v{idx}", v.ns)));
                    }
                }
                ("Gateway".into(), "istio-system".into(), format!("gw{k}"))
            }
            _ => {
                let (i, j) = (pick.index(spec.namespaces), pick.index(spec.services));
                for (idx, v) in spec.vs.iter().enumerate() {
                    if v.target == (i, j) && v.subset {
                        expected.insert(("vs-destination-subset-not-found".into(), "VirtualService".into(), format!("ns{}/v{idx}", v.ns)));
                    }
                }
                ("DestinationRule".into(), format!("ns{i}"), format!("svc{j}"))
            }
        };
        let kept: Vec<Value> = objects.iter().filter(|o| {
            !(o["kind"] == removed.0.as_str() && o["metadata"]["namespace"] == removed.1.as_str() && o["metadata"]["name"] == removed.2.as_str())
        }).cloned().collect();
        prop_assert_eq!(kept.len() + 1, objects.len());
        prop_assert_eq!(summary(&findings(&kept)), expected);
    }

    #[test]
    fn findings_do_not_depend_on_ingest_order_or_path(spec in mesh_spec(), seed in any::<u64>(), drop in any::<prop::sample::Index>()) {
        let mut objects = build(&spec);
        // break something so there is something to compare
        objects.remove(drop.index(objects.len()));
        let baseline = findings(&objects);
        let mut shuffled = objects.clone();
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(&findings(&shuffled), &baseline);
        // incremental, one event at a time, each object upserted twice
        let mut engine = Engine::open_in_memory().unwrap();
        for o in &shuffled {
            engine.upsert(o.clone()).unwrap();
            engine.upsert(o.clone()).unwrap();
        }
        let incremental = engine.check().unwrap().findings;
        prop_assert_eq!(&incremental, &baseline);
        // delete then re-insert restores the findings
        let victim = &shuffled[0];
        let key = ObjectKey::from_value(victim, "default").unwrap();
        engine.delete(&key).unwrap();
        engine.upsert(victim.clone()).unwrap();
        prop_assert_eq!(&engine.check().unwrap().findings, &baseline);
        // findings_for agrees with check for every object
        for o in &objects {
            let key = ObjectKey::from_value(o, "default").unwrap();
            let mine: Vec<_> = baseline.iter().filter(|f| f.resource.kind == key.kind && f.resource.namespace == key.namespace && f.resource.name == key.name).cloned().collect();
            prop_assert_eq!(engine.findings_for(&key).unwrap(), mine);
        }
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = mesh_integrity::parse_documents(&text, "fuzz.yaml");
    }

    #[test]
    fn parsing_arbitrary_yaml_like_text_never_panics(text in "[-:{}\\[\\], a-z0-9\n\"'*&!|>#%@`]{0,120}") {
        if let Ok(objects) = mesh_integrity::parse_documents(&text, "fuzz.yaml") {
            let mut engine = Engine::open_in_memory().unwrap();
            let _ = engine.ingest_batch(objects);
            let _ = engine.check().unwrap();
        }
    }
}

/// Variant `v` (0..4) of object `o` (0..6): each variant changes a different part of the object.
fn variant(o: usize, v: usize) -> Value {
    match o {
        0 | 1 => {
            let mut dest =
                json!({"host": format!("svc{}", v % 2), "port": {"number": 80 + (v / 2) as u32}});
            if v == 3 {
                dest["subset"] = json!("v1");
            }
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": format!("vs{o}"), "namespace": "ns", "labels": {"rev": v.to_string()}},
                "spec": {"hosts": [format!("h{}.example.com", o + v % 2)],
                         "gateways": if v >= 2 { json!(["gw"]) } else { json!([]) },
                         "http": [{"route": [{"destination": dest}]}]}})
        }
        2 | 3 => json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc{}", o - 2), "namespace": "ns",
                         "annotations": if v == 3 { json!({"networking.istio.io/exportTo": "other"}) } else { json!({}) }},
            "spec": {"selector": {"app": format!("a{v}")}, "ports": if v.is_multiple_of(2) { json!([{"port": 80}]) } else { json!([{"port": 80}, {"port": 81}]) }}}),
        4 => json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "dr", "namespace": "ns"},
            "spec": {"host": format!("svc{}", v % 2), "subsets": [{"name": format!("v{}", 1 + v / 2)}]}}),
        _ => json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "ns"},
            "spec": {"selector": {"istio": "ingress"},
                     "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                                  "hosts": if v == 0 { json!("*/*") } else { json!([format!("h{v}.example.com")]) }}]}}),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_sequence_of_updates_ends_where_a_batch_of_the_last_versions_starts(
        events in proptest::collection::vec((0usize..6, 0usize..4, any::<bool>()), 1..40),
    ) {
        let mut engine = Engine::open_in_memory().unwrap();
        let mut last: std::collections::BTreeMap<usize, Value> = std::collections::BTreeMap::new();
        for (o, v, delete) in events {
            let object = variant(o, v);
            if delete {
                engine.delete(&ObjectKey::from_value(&object, "default").unwrap()).unwrap();
                last.remove(&o);
            } else {
                engine.upsert(object.clone()).unwrap();
                last.insert(o, object);
            }
        }
        let batch = findings(&last.values().cloned().collect::<Vec<_>>());
        prop_assert_eq!(engine.check().unwrap().findings, batch);
    }
}
