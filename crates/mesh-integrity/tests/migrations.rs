//! The schema built by migrating a V1 database equals a fresh latest one.

use rusqlite::Connection;

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// Applies the migrations up to `version` only, as an engine of that version had.
fn migrate_to(conn: &mut Connection, version: i32) {
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version))
        .run(conn)
        .unwrap();
}

fn schema(conn: &Connection) -> Vec<(String, String, String, Option<String>)> {
    let mut stmt = conn
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn v1_migrated_to_latest_equals_fresh_latest() {
    let mut old = Connection::open_in_memory().unwrap();
    migrate_to(&mut old, 1);
    let v1: i64 = old
        .query_row(
            "SELECT max(version) FROM refinery_schema_history",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v1, 1);
    assert!(
        !schema(&old).iter().any(|(_, name, _, _)| name == "ms"),
        "V1 has no MeshService tables"
    );
    embedded::migrations::runner().run(&mut old).unwrap();

    let mut fresh = Connection::open_in_memory().unwrap();
    embedded::migrations::runner().run(&mut fresh).unwrap();
    assert_eq!(schema(&old), schema(&fresh));

    let latest = mesh_integrity::Engine::latest_schema_version();
    assert!(latest >= 2);
    let mut engine = mesh_integrity::Engine::open_in_memory().unwrap();
    assert_eq!(engine.schema_version().unwrap(), latest);
    assert_eq!(schema(engine.connection()), schema(&fresh));
    // a batch into an empty engine defers its indexes: afterwards the schema is unchanged
    engine
        .ingest_batch(vec![
            serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}),
        ])
        .unwrap();
    assert_eq!(schema(engine.connection()), schema(&fresh));
}

/// A directory of its own (per test and process) and the path of a database file not yet there.
fn fresh_database_path(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("engine.sqlite");
    let _ = std::fs::remove_file(&path);
    (dir, path)
}

#[test]
fn a_file_database_is_migrated_once_and_reopened() {
    let (dir, path) = fresh_database_path("mesh-integrity");
    {
        let mut engine = mesh_integrity::Engine::open(&path).unwrap();
        engine
            .upsert(serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "x"}}))
            .unwrap();
    }
    let engine = mesh_integrity::Engine::open(&path).unwrap();
    assert_eq!(
        engine.schema_version().unwrap(),
        mesh_integrity::Engine::latest_schema_version()
    );
    assert!(
        engine
            .contains(&mesh_integrity::ObjectKey::service("x", "a"))
            .unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reopened_file_database_applies_changes_made_before_and_after() {
    let (dir, path) = fresh_database_path("mesh-integrity-reopen");
    let vs = |host: &str| {
        serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "r", "namespace": "x"},
            "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": host}}]}]}})
    };
    let service = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "a", "namespace": "x"}, "spec": {"ports": [{"port": 80}]}});
    {
        let mut engine = mesh_integrity::Engine::open(&path).unwrap();
        engine.upsert(service).unwrap();
        engine.upsert(vs("nowhere")).unwrap();
        assert_eq!(engine.check().unwrap().findings.len(), 1);
    }
    let mut engine = mesh_integrity::Engine::open(&path).unwrap();
    engine.upsert(vs("a")).unwrap();
    assert!(engine.check().unwrap().findings.is_empty());
    engine.upsert(vs("nowhere")).unwrap();
    assert_eq!(engine.check().unwrap().findings.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

fn cache_size(engine: &mesh_integrity::Engine) -> i64 {
    engine
        .connection()
        .pragma_query_value(None, "cache_size", |r| r.get(0))
        .unwrap()
}

#[test]
fn a_file_database_keeps_sqlites_page_cache_size_after_a_batch() {
    let (dir, path) = fresh_database_path("mesh-integrity-cache");
    let mut engine = mesh_integrity::Engine::open(&path).unwrap();
    let default = cache_size(&engine);
    engine
        .ingest_batch([mesh_integrity::SourceObject::new(serde_json::json!(
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "x"}}
        ))])
        .unwrap();
    assert_eq!(cache_size(&engine), default);
    // an in-memory database holds every page anyway: it keeps the large size for index builds
    // (negative sizes are KiB: more negative is larger)
    let in_memory = mesh_integrity::Engine::open_in_memory().unwrap();
    assert!(
        cache_size(&in_memory) < default,
        "{}",
        cache_size(&in_memory)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_v5_database_keeps_its_objects_through_the_v6_object_table_rebuild_and_the_v9_columns() {
    // Rows as the engine wrote them at V5 (V6 rebuilds the object table, whose ids the other
    // tables reference): a Service with two ports and a VirtualService routing to it without a
    // port (IST0112).
    let (dir, path) = fresh_database_path("mesh-integrity-v5-data");
    {
        let mut old = Connection::open(&path).unwrap();
        migrate_to(&mut old, 5);
        old.execute_batch(
            "INSERT INTO object (id, grp, kind, ns, name, api_version) VALUES
                 (1, '', 'Service', 'shop', 'cart', 'v1'),
                 (2, 'networking.istio.io', 'VirtualService', 'shop', 'r', 'networking.istio.io/v1');
             INSERT INTO service (obj, sel_n) VALUES (1, 1);
             INSERT INTO selector (obj, key, value) VALUES (1, 'app', 'cart');
             INSERT INTO provider (obj, scope, raw, fqdn, wild, suffix) VALUES (1, '*', 'cart', 'cart.shop.svc.cluster.local', 0, NULL);
             INSERT INTO port (obj, number, name, protocol, target) VALUES (1, 80, 'http', 'HTTP', 8080), (1, 81, 'admin', 'HTTP', 8081);
             INSERT INTO vs (obj, mesh, export_all) VALUES (2, 1, 1);
             INSERT INTO vs_host (obj, idx, host, fqdn, wild) VALUES (2, 0, 'r', 'r.shop.svc.cluster.local', 0);
             INSERT INTO mesh_host (obj, scope, fqdn, wild) VALUES (2, '*', 'r.shop.svc.cluster.local', 0);
             INSERT INTO dest (obj, idx, mirror, host, fqdn, port, subset, skey, path)
                 VALUES (2, 0, 0, 'cart', 'cart.shop.svc.cluster.local', NULL, NULL, 'shop/cart', '/spec/http/0/route/0/destination');",
        )
        .unwrap();
    }
    let migrated = mesh_integrity::Engine::open(&path).unwrap();
    assert_eq!(
        migrated.schema_version().unwrap(),
        mesh_integrity::Engine::latest_schema_version()
    );
    let mut fresh = mesh_integrity::Engine::open_in_memory().unwrap();
    fresh
        .ingest_batch(vec![
            serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "cart", "namespace": "shop"},
                "spec": {"selector": {"app": "cart"}, "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080},
                    {"name": "admin", "port": 81, "targetPort": 8081}]}}),
            serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": "r", "namespace": "shop"},
                "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "cart"}}]}]}}),
        ])
        .unwrap();
    let codes = |engine: &mesh_integrity::Engine| -> Vec<(String, String)> {
        engine
            .check()
            .unwrap()
            .findings
            .into_iter()
            .map(|f| (f.code, f.resource.name))
            .collect()
    };
    assert_eq!(
        codes(&migrated),
        vec![("IST0112".to_string(), "r".to_string())]
    );
    assert_eq!(codes(&migrated), codes(&fresh));
    drop(migrated);
    // V9 moved the VirtualService's `vs` row and the Service's `service` row into `object`
    /// kind, vs_mesh, vs_export_all, svc_sel_n
    type FoldedColumns = (String, Option<bool>, Option<bool>, Option<i64>);
    let folded: Vec<FoldedColumns> = Connection::open(&path)
        .unwrap()
        .prepare("SELECT kind, vs_mesh, vs_export_all, svc_sel_n FROM object ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        folded,
        vec![
            ("Service".to_string(), None, None, Some(1)),
            ("VirtualService".to_string(), Some(true), Some(true), None),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn v10_reverses_the_gateway_server_hosts_already_stored() {
    // Server rows as the engine wrote them at V9; V10 computes their reversed base in SQL, which
    // must equal what the engine computes for new rows.
    let hosts = [
        "*",
        "*.shop.example.com",
        "cart.shop.example.com",
        "*hop.example.com",
        "ünïcode.example",
        "",
    ];
    let (dir, path) = fresh_database_path("mesh-integrity-v10-data");
    {
        let mut old = Connection::open(&path).unwrap();
        migrate_to(&mut old, 9);
        old.execute(
            "INSERT INTO object (id, grp, kind, ns, name, api_version) \
             VALUES (1, 'networking.istio.io', 'Gateway', 'edge', 'public', 'networking.istio.io/v1')",
            [],
        )
        .unwrap();
        for (i, host) in hosts.iter().enumerate() {
            old.execute(
                "INSERT INTO gw_server (obj, sidx, hidx, port, bind, raw, host, wild) \
                 VALUES (1, 0, ?1, 80, '', ?2, ?2, ?3)",
                rusqlite::params![i as i64, host, host.starts_with('*')],
            )
            .unwrap();
        }
    }
    let migrated = mesh_integrity::Engine::open(&path).unwrap();
    let mut stmt = migrated
        .connection()
        .prepare("SELECT host, rbase FROM gw_server ORDER BY hidx")
        .unwrap();
    let stored: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected: Vec<(String, String)> = hosts
        .iter()
        .map(|h| (h.to_string(), mesh_integrity::host::reversed_base(h)))
        .collect();
    assert_eq!(stored, expected);
    drop(stmt);
    drop(migrated);
    let _ = std::fs::remove_dir_all(&dir);
}
