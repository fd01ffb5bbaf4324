//! The engine: a SQLite connection holding the projections, and the operations on it.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::error::Error;
use crate::finding::{
    Coverage, Durations, Finding, FindingCount, REPORT_VERSION, RelatedRef, Report, ResourceRef,
    RuleInfo, Severity, SkippedRule, Summary,
};
use crate::model::{IngestOptions, IngestStats, ObjectKey, SourceObject};
use crate::project::{self, Projected, Projection};
use crate::rules::{self, Analysis, Hit, Row};
use crate::suppress::Suppression;

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// The integrity engine. Holds the projected mesh in SQLite; single-threaded (not `Sync`): wrap it
/// in a `Mutex` to share it.
pub struct Engine {
    conn: Connection,
    options: IngestOptions,
    suppressions: Vec<Suppression>,
    last_ingest: Option<Duration>,
    full_sql: Vec<String>,
    targeted_sql: Vec<String>,
    /// [`Engine::present_kinds`], until a write may change it.
    present_kinds: RefCell<Option<Vec<String>>>,
    /// Whether the database is a file (`Engine::open`): its page cache is then SQLite's default
    /// except while a batch loads (see [`BULK_CACHE_SIZE`]).
    file_backed: bool,
}

/// `PRAGMA cache_size` (KiB when negative) while a batch is loaded: the sorter that builds the
/// indexes dropped for the load spills to merge passes below it. An in-memory database keeps
/// every page anyway, so it has this size for good; a file-backed one only for the batch, so
/// that a long-lived tool's database file does not hold up to 256 MB of page cache.
const BULK_CACHE_SIZE: &str = "-262144";

/// The core kinds whose presence decides whether the rules that need them run.
const COVERAGE_KINDS: [&str; 3] = ["Pod", "Secret", "Namespace"];

/// Time each analysis took, by (first) rule name.
pub type AnalysisTimings = Vec<(&'static str, Duration)>;

/// What the engine knows about one stored object.
#[derive(Debug, Clone)]
pub(crate) struct ObjInfo {
    pub key: ObjectKey,
    pub api_version: String,
    pub owner: Option<String>,
    pub managed: bool,
    pub suppress: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl ObjInfo {
    pub fn resource(&self) -> ResourceRef {
        ResourceRef {
            api_version: self.api_version.clone(),
            kind: self.key.kind.clone(),
            namespace: self.key.namespace.clone(),
            name: self.key.name.clone(),
        }
    }
    /// `Kind ns/name`.
    pub fn display(&self) -> String {
        self.key.to_string()
    }
    /// `ns/name`.
    pub fn nsname(&self) -> String {
        format!("{}/{}", self.key.namespace, self.key.name)
    }
    /// Owned by the operator: it may apply repairs to it.
    pub fn operator_owned(&self) -> bool {
        self.managed || self.owner.is_some()
    }
}

/// Lookups rules make while building findings.
pub(crate) struct Ctx<'c> {
    pub conn: &'c Connection,
    cache: RefCell<HashMap<i64, Rc<ObjInfo>>>,
}

impl<'c> Ctx<'c> {
    fn new(conn: &'c Connection) -> Self {
        Ctx {
            conn,
            cache: RefCell::new(HashMap::new()),
        }
    }

    pub fn obj(&self, id: i64) -> Result<Rc<ObjInfo>, Error> {
        if let Some(info) = self.cache.borrow().get(&id) {
            return Ok(info.clone());
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT grp, kind, ns, name, api_version, owner, managed, suppress, file, line FROM object WHERE id = ?1",
        )?;
        let info = stmt.query_row([id], |r| {
            Ok(ObjInfo {
                key: ObjectKey {
                    group: r.get(0)?,
                    kind: r.get(1)?,
                    namespace: r.get(2)?,
                    name: r.get(3)?,
                },
                api_version: r.get(4)?,
                owner: r.get(5)?,
                managed: r.get::<_, i64>(6)? != 0,
                suppress: r.get(7)?,
                file: r.get(8)?,
                line: r.get::<_, Option<i64>>(9)?.map(|l| l as u32),
            })
        })?;
        let info = Rc::new(info);
        self.cache.borrow_mut().insert(id, info.clone());
        Ok(info)
    }

    /// Rows of a lookup query (small result sets).
    pub fn rows(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Row>, Error> {
        query_rows(self.conn, sql, params)
    }

    /// Id of an object by key parts.
    pub fn find(
        &self,
        group: &str,
        kind: &str,
        ns: &str,
        name: &str,
    ) -> Result<Option<i64>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM object WHERE grp = ?1 AND kind = ?2 AND ns = ?3 AND name = ?4",
        )?;
        Ok(stmt
            .query_row(params![group, kind, ns, name], |r| r.get(0))
            .optional()?)
    }
}

pub(crate) fn query_rows(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Row>, Error> {
    let mut stmt = conn.prepare_cached(sql)?;
    let n = stmt.column_count();
    let mut out = Vec::new();
    let mut rows = stmt.query(params)?;
    while let Some(r) = rows.next()? {
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            values.push(r.get::<_, rusqlite::types::Value>(i)?);
        }
        out.push(Row(values));
    }
    Ok(out)
}

fn register_functions(conn: &Connection) -> Result<(), Error> {
    let flags = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    conn.create_scalar_function("host_matches", 2, flags, |ctx| {
        let a = ctx.get_raw(0).as_str().unwrap_or("");
        let b = ctx.get_raw(1).as_str().unwrap_or("");
        Ok(crate::host::matches(a, b))
    })?;
    conn.create_scalar_function("ends_with", 2, flags, |ctx| {
        let a = ctx.get_raw(0).as_str().unwrap_or("");
        let b = ctx.get_raw(1).as_str().unwrap_or("");
        Ok(a.ends_with(b))
    })?;
    Ok(())
}

/// How a transaction stores objects.
enum Load {
    /// Every index in place: keys are looked up, replaced objects' rows deleted (upserts, and
    /// batches into a non-empty engine).
    Indexed,
    /// A batch into an empty engine: the projection indexes are dropped for the load and built
    /// once at the end (cheaper than maintaining them row by row), and objects are inserted
    /// without looking their key up first (the object key's UNIQUE constraint reports a repeat).
    Bulk {
        /// `CREATE INDEX` statements of the dropped indexes.
        indexes: Vec<String>,
    },
}

impl Load {
    /// `Bulk` when the engine holds nothing yet, else `Indexed`.
    fn start(conn: &Connection) -> Result<Load, Error> {
        let empty: bool =
            conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM object)", [], |r| r.get(0))?;
        if !empty {
            return Ok(Load::Indexed);
        }
        let dropped: Vec<(String, String)> = {
            let mut stmt = conn.prepare(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
                 AND tbl_name NOT IN ('object', 'refinery_schema_history') ORDER BY name",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut indexes = Vec::with_capacity(dropped.len());
        for (name, sql) in dropped {
            conn.execute_batch(&format!("DROP INDEX \"{name}\""))?;
            indexes.push(sql);
        }
        Ok(Load::Bulk { indexes })
    }

    /// Builds the dropped indexes (if any) and continues as `Indexed`.
    fn restore_indexes(&mut self, conn: &Connection) -> Result<(), Error> {
        if let Load::Bulk { indexes, .. } = std::mem::replace(self, Load::Indexed) {
            for sql in &indexes {
                conn.execute_batch(sql)?;
            }
        }
        Ok(())
    }

    /// Ends the load: the indexes are all back.
    fn finish(mut self, conn: &Connection) -> Result<(), Error> {
        self.restore_indexes(conn)
    }
}

/// Tables holding an object's projection, by kind (plus `export_to` and `undecodable` for all).
fn tables_of(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("networking.istio.io", "VirtualService") => {
            &["vs", "vs_host", "vs_gateway", "mesh_host", "dest"]
        }
        ("networking.istio.io", "Gateway") => &["gateway", "gw_server", "selector"],
        ("networking.istio.io", "DestinationRule") => &["dr", "dr_subset"],
        ("networking.istio.io", "ServiceEntry") => &["provider", "port"],
        ("networking.istio.io", "Sidecar") => &["sidecar", "selector"],
        ("", "Service") => &["service", "selector", "provider", "port"],
        ("", "Pod") => &["label"],
        ("", "Secret") => &["secret"],
        ("gateway.networking.k8s.io", "Gateway") => &["gw_server"],
        ("mesh.istio.operator", "MeshService") => &["ms", "ms_host", "ms_port"],
        _ => &[],
    }
}

impl Engine {
    /// An engine on a private in-memory database (the default).
    pub fn open_in_memory() -> Result<Engine, Error> {
        Self::with_connection(Connection::open_in_memory()?, false)
    }

    /// An engine on a database file (created and migrated if needed), for tools that keep state.
    pub fn open(path: impl AsRef<Path>) -> Result<Engine, Error> {
        Self::with_connection(Connection::open(path)?, true)
    }

    fn with_connection(mut conn: Connection, file_backed: bool) -> Result<Engine, Error> {
        conn.execute_batch(
            "PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY; PRAGMA foreign_keys = OFF;",
        )?;
        if !file_backed {
            conn.pragma_update(None, "cache_size", BULK_CACHE_SIZE)?;
        }
        let _ = conn.pragma_update(None, "journal_mode", "MEMORY");
        // The query planner stability guarantee: plans do not depend on bound values. Without it
        // SQLite marks most statements with a `col = ?N` term as "re-plan when the binding
        // changes", and rusqlite's statement cache clears the bindings of every statement it
        // takes back, so each reuse of a cached statement was compiled again (a third of an
        // incremental event, and one compile per finding in `check`). The rules pin their join
        // orders anyway.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        register_functions(&conn)?;
        conn.set_prepared_statement_cache_capacity(128);
        embedded::migrations::runner().run(&mut conn)?;
        let analyses = rules::analyses();
        let full_sql = analyses.iter().map(|a| a.sql_for(None)).collect();
        let targeted_sql = analyses.iter().map(|a| a.sql_for(Some(()))).collect();
        Ok(Engine {
            conn,
            options: IngestOptions::default(),
            suppressions: Vec::new(),
            last_ingest: None,
            full_sql,
            targeted_sql,
            present_kinds: RefCell::new(None),
            file_backed,
        })
    }

    /// Sets the ingest options (default namespace).
    pub fn set_options(&mut self, options: IngestOptions) {
        self.options = options;
    }

    /// Builder form of [`Engine::set_options`].
    pub fn with_options(mut self, options: IngestOptions) -> Self {
        self.options = options;
        self
    }

    /// The ingest options in force.
    pub fn options(&self) -> &IngestOptions {
        &self.options
    }

    /// The schema version: the latest migration applied (`V2__…` → 2).
    pub fn schema_version(&self) -> Result<i64, Error> {
        Ok(self.conn.query_row(
            "SELECT coalesce(max(version), 0) FROM refinery_schema_history",
            [],
            |r| r.get(0),
        )?)
    }

    /// The latest schema version this build knows.
    pub fn latest_schema_version() -> i64 {
        embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|m| m.version() as i64)
            .max()
            .unwrap_or(0)
    }

    /// The underlying SQLite connection, read-only use intended (ad-hoc queries, debugging).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Adds an external suppression (`CODE` or `CODE=Kind/namespace/name`), as the CLI's `--suppress`.
    pub fn add_suppression(&mut self, spec: &str) -> Result<(), Error> {
        self.suppressions.push(Suppression::parse(spec)?);
        Ok(())
    }

    /// Removes every external suppression.
    pub fn clear_suppressions(&mut self) {
        self.suppressions.clear();
    }

    /// Ingests a snapshot in one transaction. Objects already present (same key) are replaced.
    /// Unknown kinds are counted and skipped; objects that cannot be projected are stored as
    /// `MSH0001` findings. Only SQLite failures are errors.
    pub fn ingest_batch<I>(&mut self, objects: I) -> Result<IngestStats, Error>
    where
        I: IntoIterator,
        I::Item: Into<SourceObject>,
    {
        let started = Instant::now();
        let default_cache_size: Option<i64> = if self.file_backed {
            let size = self
                .conn
                .pragma_query_value(None, "cache_size", |r| r.get(0))?;
            self.conn
                .pragma_update(None, "cache_size", BULK_CACHE_SIZE)?;
            Some(size)
        } else {
            None
        };
        let loaded = self.load_batch(objects);
        self.forget_present_kinds(None);
        if let Some(size) = default_cache_size {
            self.conn.pragma_update(None, "cache_size", size)?;
        }
        let stats = loaded?;
        self.last_ingest = Some(started.elapsed());
        Ok(stats)
    }

    fn load_batch<I>(&mut self, objects: I) -> Result<IngestStats, Error>
    where
        I: IntoIterator,
        I::Item: Into<SourceObject>,
    {
        let mut stats = IngestStats::default();
        let tx = self.conn.transaction()?;
        let mut load = Load::start(&tx)?;
        for object in objects {
            let object: SourceObject = object.into();
            store_object(&tx, &self.options, &object, &mut stats, &mut load)?;
        }
        load.finish(&tx)?;
        tx.commit()?;
        Ok(stats)
    }

    /// Inserts or replaces one object (a watch event). Returns its key, or `None` for a kind the
    /// engine does not check. An object that cannot be projected is stored as an `MSH0001`
    /// finding; an object without apiVersion, kind or name is an [`Error::Identity`].
    pub fn upsert(&mut self, object: impl Into<SourceObject>) -> Result<Option<ObjectKey>, Error> {
        let object = object.into();
        let mut stats = IngestStats::default();
        let tx = self.conn.transaction()?;
        let key = store_object(&tx, &self.options, &object, &mut stats, &mut Load::Indexed)?;
        tx.commit()?;
        if let Some(key) = &key {
            self.forget_present_kinds(Some(key));
        }
        if key.is_none() && stats.skipped_unknown.is_empty() {
            return Err(Error::Identity(identity_problem(&object.value)));
        }
        Ok(key)
    }

    /// [`Engine::upsert`] of a borrowed value.
    pub fn upsert_value(&mut self, value: &Value) -> Result<Option<ObjectKey>, Error> {
        self.upsert(SourceObject::new(value.clone()))
    }

    /// Removes one object. Returns whether it was present.
    pub fn delete(&mut self, key: &ObjectKey) -> Result<bool, Error> {
        let tx = self.conn.transaction()?;
        let id: Option<i64> = tx
            .prepare_cached(
                "SELECT id FROM object WHERE grp = ?1 AND kind = ?2 AND ns = ?3 AND name = ?4",
            )?
            .query_row(params![key.group, key.kind, key.namespace, key.name], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(id) = id {
            clear_rows(&tx, id, &key.group, &key.kind)?;
            tx.prepare_cached("DELETE FROM object WHERE id = ?1")?
                .execute([id])?;
        }
        tx.commit()?;
        self.forget_present_kinds(Some(key));
        Ok(id.is_some())
    }

    /// Records an object that failed to decode elsewhere (e.g. the operator's typed watch) as an
    /// `MSH0001` finding on `key`, replacing what was stored under that key. The next successful
    /// upsert of the key clears it.
    pub fn record_undecodable(&mut self, key: &ObjectKey, message: &str) -> Result<(), Error> {
        let api_version = if key.group.is_empty() {
            "v1".to_string()
        } else {
            format!("{}/unknown", key.group)
        };
        let projection = project::undecodable(key, &api_version, message);
        let tx = self.conn.transaction()?;
        store_projection(&tx, &projection, None, &mut Load::Indexed)?;
        tx.commit()?;
        self.forget_present_kinds(Some(key));
        Ok(())
    }

    /// Number of objects held, by kind.
    pub fn objects_by_kind(&self) -> Result<BTreeMap<String, u64>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT kind, count(*) FROM object GROUP BY kind")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether an object is held.
    pub fn contains(&self, key: &ObjectKey) -> Result<bool, Error> {
        Ok(self.object_id(key)?.is_some())
    }

    fn object_id(&self, key: &ObjectKey) -> Result<Option<i64>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM object WHERE grp = ?1 AND kind = ?2 AND ns = ?3 AND name = ?4",
        )?;
        Ok(stmt
            .query_row(params![key.group, key.kind, key.namespace, key.name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// The kinds some rules need (Pods, Secrets, Namespaces) that the engine holds. Remembered
    /// until a write may change it (see [`Engine::forget_present_kinds`]): asking SQLite cost a
    /// watch event about a tenth of its `findings_for`.
    fn present_kinds(&self) -> Result<Vec<String>, Error> {
        if let Some(present) = self.present_kinds.borrow().as_ref() {
            return Ok(present.clone());
        }
        let present = self.query_present_kinds()?;
        *self.present_kinds.borrow_mut() = Some(present.clone());
        Ok(present)
    }

    /// After a write of the object `written` (`None`: of objects of any kind), the kinds present
    /// may have changed.
    fn forget_present_kinds(&self, written: Option<&ObjectKey>) {
        let may_change = written
            .is_none_or(|key| key.group.is_empty() && COVERAGE_KINDS.contains(&key.kind.as_str()));
        if may_change {
            *self.present_kinds.borrow_mut() = None;
        }
    }

    fn query_present_kinds(&self) -> Result<Vec<String>, Error> {
        // one statement for the three kinds: each statement run costs about a microsecond
        let present: [bool; 3] = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM object WHERE kind = 'Pod' AND grp = ''), \
                        EXISTS (SELECT 1 FROM object WHERE kind = 'Secret' AND grp = ''), \
                        EXISTS (SELECT 1 FROM object WHERE kind = 'Namespace' AND grp = '')",
            )?
            .query_row([], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?]))?;
        Ok(COVERAGE_KINDS
            .into_iter()
            .zip(present)
            .filter(|(_, present)| *present)
            .map(|(kind, _)| kind.to_string())
            .collect())
    }

    /// Runs every rule over everything held and returns the report.
    pub fn check(&self) -> Result<Report, Error> {
        let started = Instant::now();
        let present = self.present_kinds()?;
        let ctx = Ctx::new(&self.conn);
        let mut findings = Vec::new();
        let mut suppressed = 0u64;
        let mut by_rule_ms = BTreeMap::new();
        let mut coverage = Coverage {
            pods: present.iter().any(|k| k == "Pod"),
            secrets: present.iter().any(|k| k == "Secret"),
            namespaces: present.iter().any(|k| k == "Namespace"),
            ..Coverage::default()
        };
        for (i, analysis) in rules::analyses().iter().enumerate() {
            if let Some(missing) = analysis.missing(&present) {
                for rule in analysis.rules {
                    coverage.skipped_rules.push(SkippedRule {
                        rule: rule.name.to_string(),
                        code: rule.code.to_string(),
                        reason: format!("no {missing} in the input"),
                    });
                }
                continue;
            }
            let analysis_started = Instant::now();
            if !self.guard_open(analysis)? {
                continue;
            }
            let rows = query_rows(&self.conn, &self.full_sql[i], [])?;
            let hits = build_hits(&ctx, analysis, rows)?;
            for hit in hits {
                match self.finish(&ctx, hit)? {
                    Some(f) => findings.push(f),
                    None => suppressed += 1,
                }
            }
            by_rule_ms.insert(
                analysis.rules[0].name.to_string(),
                analysis_started.elapsed().as_secs_f64() * 1e3,
            );
        }
        for missing in ["Pod", "Secret", "Namespace"] {
            let skipped: Vec<&str> = rules::analyses()
                .iter()
                .filter(|a| a.missing(&present) == Some(missing))
                .flat_map(|a| a.rules.iter().map(|r| r.name))
                .collect();
            if !skipped.is_empty() {
                coverage.notes.push(format!(
                    "no {missing} in the input: {} did not run (add {missing} objects to check them)",
                    skipped.join(", ")
                ));
            }
        }
        sort_findings(&mut findings);
        let objects_by_kind = self.objects_by_kind()?;
        let summary = summarise(&findings, objects_by_kind, suppressed);
        Ok(Report {
            report_version: REPORT_VERSION,
            schema_version: self.schema_version()?,
            findings,
            summary,
            durations: Durations {
                ingest_ms: self.last_ingest.map(|d| d.as_secs_f64() * 1e3),
                check_ms: started.elapsed().as_secs_f64() * 1e3,
                by_rule_ms,
            },
            coverage,
        })
    }

    /// How many findings [`Engine::check`] would report, per (code, severity), sorted; suppressed
    /// findings are not counted. Much cheaper than `check` when there are many findings: the
    /// rules' queries run as in `check`, but no finding, message or repair plan is built (for
    /// metrics). Rules that `check` skips for lack of input are skipped here too.
    pub fn finding_counts(&self) -> Result<Vec<FindingCount>, Error> {
        let present = self.present_kinds()?;
        let ctx = Ctx::new(&self.conn);
        // the few objects carrying a suppress annotation, so that the others need no lookup
        let annotated: HashMap<i64, String> = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT id, suppress FROM object WHERE suppress IS NOT NULL")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut counts: BTreeMap<(&'static str, Severity), u64> = BTreeMap::new();
        for (i, analysis) in rules::analyses().iter().enumerate() {
            if analysis.missing(&present).is_some() || !self.guard_open(analysis)? {
                continue;
            }
            let mut reported = std::collections::HashSet::new();
            let mut stmt = self.conn.prepare_cached(&self.full_sql[i])?;
            let columns = stmt.column_count();
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let obj: i64 = r.get(0)?;
                let rule = if analysis.rule_of_row.is_some() {
                    let values = (0..columns)
                        .map(|c| r.get::<_, rusqlite::types::Value>(c))
                        .collect::<Result<_, _>>()?;
                    analysis.rule_of(&Row(values))
                } else {
                    analysis.rules[0]
                };
                if analysis.once_per_object && !reported.insert(obj) {
                    continue;
                }
                let annotation = annotated.get(&obj).map(String::as_str);
                if crate::suppress::annotation_suppresses(annotation, rule.code)
                    || (!self.suppressions.is_empty()
                        && self.externally_suppressed(rule, &ctx.obj(obj)?.key))
                {
                    continue;
                }
                *counts.entry((rule.code, rule.severity)).or_default() += 1;
            }
        }
        Ok(counts
            .into_iter()
            .map(|((code, severity), count)| FindingCount {
                code: code.to_string(),
                severity,
                count,
            })
            .collect())
    }

    /// The findings reported on one object (indexed: the rules run restricted to it). Same
    /// findings as the object's share of [`Engine::check`].
    pub fn findings_for(&self, key: &ObjectKey) -> Result<Vec<Finding>, Error> {
        Ok(self.findings_for_profiled(key)?.0)
    }

    /// [`Engine::findings_for`] with the time each analysis took (for benchmarks and tuning).
    #[doc(hidden)]
    pub fn findings_for_profiled(
        &self,
        key: &ObjectKey,
    ) -> Result<(Vec<Finding>, AnalysisTimings), Error> {
        let mut timings = Vec::new();
        let Some(id) = self.object_id(key)? else {
            return Ok((Vec::new(), timings));
        };
        let present = self.present_kinds()?;
        let ctx = Ctx::new(&self.conn);
        let mut findings = Vec::new();
        for (i, analysis) in rules::analyses().iter().enumerate() {
            if !analysis.reports_on.contains(&key.kind.as_str())
                || analysis.missing(&present).is_some()
            {
                continue;
            }
            let started = Instant::now();
            if !self.guard_open(analysis)? {
                continue;
            }
            let rows = query_rows(&self.conn, &self.targeted_sql[i], [id])?;
            for hit in build_hits(&ctx, analysis, rows)? {
                if hit.obj != id {
                    continue;
                }
                if let Some(f) = self.finish(&ctx, hit)? {
                    findings.push(f);
                }
            }
            timings.push((analysis.rules[0].name, started.elapsed()));
        }
        sort_findings(&mut findings);
        Ok((findings, timings))
    }

    /// Whether an [`Engine::add_suppression`] silences `rule` on `key`.
    fn externally_suppressed(&self, rule: &RuleInfo, key: &ObjectKey) -> bool {
        self.suppressions.iter().any(|s| s.matches(rule, key))
    }

    fn guard_open(&self, analysis: &Analysis) -> Result<bool, Error> {
        match analysis.guard {
            None => Ok(true),
            Some(sql) => Ok(self.conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?),
        }
    }

    fn finish(&self, ctx: &Ctx, hit: Hit) -> Result<Option<Finding>, Error> {
        let info = ctx.obj(hit.obj)?;
        if crate::suppress::annotation_suppresses(info.suppress.as_deref(), hit.rule.code)
            || self.externally_suppressed(hit.rule, &info.key)
        {
            return Ok(None);
        }
        let mut related: Vec<RelatedRef> = Vec::new();
        for id in hit.related {
            if id != hit.obj {
                let other = ctx.obj(id)?;
                let resource = other.resource();
                if !related.iter().any(|r| r.resource == resource) {
                    related.push(RelatedRef {
                        resource,
                        file: other.file.clone(),
                        line: other.line,
                    });
                }
            }
        }
        let winner = match hit.winner {
            Some(id) => Some(ctx.obj(id)?.resource()),
            None => None,
        };
        Ok(Some(Finding {
            code: hit.rule.code.to_string(),
            rule: hit.rule.name.to_string(),
            severity: hit.rule.severity,
            resource: info.resource(),
            message: hit.message,
            file: info.file.clone(),
            line: info.line,
            related,
            chain: hit.chain,
            repair: hit.repair,
            host: hit.host,
            port: hit.port,
            gateway: hit.gateway,
            winner,
        }))
    }
}

fn build_hits(ctx: &Ctx, analysis: &Analysis, rows: Vec<Row>) -> Result<Vec<Hit>, Error> {
    let mut hits = Vec::with_capacity(rows.len());
    let mut seen = std::collections::HashSet::new();
    for row in rows {
        if let Some(hit) = (analysis.build)(ctx, &row)? {
            if analysis.once_per_object && !seen.insert(hit.obj) {
                continue;
            }
            hits.push(hit);
        }
    }
    Ok(hits)
}

pub(crate) fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        (
            &a.resource.namespace,
            &a.resource.kind,
            &a.resource.name,
            &a.code,
            &a.rule,
            &a.message,
            &a.host,
            a.port,
        )
            .cmp(&(
                &b.resource.namespace,
                &b.resource.kind,
                &b.resource.name,
                &b.code,
                &b.rule,
                &b.message,
                &b.host,
                b.port,
            ))
    });
}

fn summarise(
    findings: &[Finding],
    objects_by_kind: BTreeMap<String, u64>,
    suppressed: u64,
) -> Summary {
    let mut summary = Summary {
        total: findings.len() as u64,
        objects_total: objects_by_kind.values().sum(),
        objects_by_kind,
        suppressed,
        ..Summary::default()
    };
    for s in ["error", "warning", "info"] {
        summary.by_severity.insert(s.to_string(), 0);
    }
    for f in findings {
        *summary.by_code.entry(f.code.clone()).or_default() += 1;
        *summary.by_rule.entry(f.rule.clone()).or_default() += 1;
        *summary
            .by_severity
            .entry(f.severity.as_str().to_string())
            .or_default() += 1;
        *summary
            .by_namespace
            .entry(f.resource.namespace.clone())
            .or_default() += 1;
    }
    summary
}

fn identity_problem(value: &Value) -> String {
    match project::project(value, "default") {
        Projected::NoIdentity(message) => message,
        _ => "object has no usable identity".into(),
    }
}

/// Projects and stores one object; returns its key (None for unknown kinds and objects without
/// identity; the latter are stored under a synthetic name when they come from a file).
fn store_object(
    conn: &Connection,
    options: &IngestOptions,
    object: &SourceObject,
    stats: &mut IngestStats,
    load: &mut Load,
) -> Result<Option<ObjectKey>, Error> {
    match project::project(&object.value, &options.default_namespace) {
        Projected::Unknown(kind) => {
            *stats.skipped_unknown.entry(kind).or_default() += 1;
            Ok(None)
        }
        Projected::NoIdentity(message) => {
            // Batch input from files: keep it as a finding under a synthetic name so the run reports it.
            let Some(origin) = &object.origin else {
                return Ok(None);
            };
            let api_version = object
                .value
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("v1");
            let kind = object
                .value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("Unknown");
            let group = crate::model::group_of(api_version);
            if !project::is_known(group, kind) {
                *stats
                    .skipped_unknown
                    .entry(format!("{api_version}/{kind}"))
                    .or_default() += 1;
                return Ok(None);
            }
            let key = ObjectKey::new(
                group,
                kind,
                &options.default_namespace,
                &format!("(unnamed {}:{})", origin.file, origin.line),
            );
            let projection = project::undecodable(&key, api_version, &message);
            store_projection(conn, &projection, Some(object), load)?;
            stats.undecodable += 1;
            stats.total += 1;
            *stats.by_kind.entry(key.kind.clone()).or_default() += 1;
            Ok(Some(key))
        }
        Projected::Object(projection) => {
            store_projection(conn, &projection, Some(object), load)?;
            if projection.rows.undecodable.is_some() {
                stats.undecodable += 1;
            }
            stats.total += 1;
            *stats
                .by_kind
                .entry(projection.key.kind.clone())
                .or_default() += 1;
            Ok(Some(projection.key))
        }
    }
}

/// Every table an object of this kind can have rows in, in the order of its `proj_hash`.
fn object_tables(group: &str, kind: &str) -> impl Iterator<Item = &'static str> {
    tables_of(group, kind)
        .iter()
        .chain(["export_to", "undecodable"].iter())
        .copied()
}

fn clear_rows(conn: &Connection, id: i64, group: &str, kind: &str) -> Result<(), Error> {
    for table in object_tables(group, kind) {
        clear_table(conn, id, table)?;
    }
    Ok(())
}

fn clear_table(conn: &Connection, id: i64, table: &str) -> Result<(), Error> {
    conn.prepare_cached(&format!("DELETE FROM {table} WHERE obj = ?1"))?
        .execute([id])?;
    Ok(())
}

/// The `proj_hash` of a projection: per table of its kind, a hash of the rows it writes there.
fn projection_hashes(group: &str, kind: &str, rows: &project::Rows) -> Vec<u8> {
    object_tables(group, kind)
        .flat_map(|table| {
            let mut hasher = DefaultHasher::new();
            table_rows_hash(rows, table, &mut hasher);
            hasher.finish().to_le_bytes()
        })
        .collect()
}

/// Hashes the part of `rows` that [`insert_table`] writes into `table`.
fn table_rows_hash(rows: &project::Rows, table: &str, hasher: &mut DefaultHasher) {
    match table {
        "export_to" => rows.export_to.hash(hasher),
        "undecodable" => rows.undecodable.hash(hasher),
        "vs" => rows.vs.hash(hasher),
        "vs_host" => rows.vs_host.hash(hasher),
        "vs_gateway" => rows.vs_gateway.hash(hasher),
        "mesh_host" => rows.mesh_host.hash(hasher),
        "dest" => rows.dest.hash(hasher),
        "gateway" => rows.gateway.hash(hasher),
        "gw_server" => rows.gw_server.hash(hasher),
        "selector" => rows.selector.hash(hasher),
        "label" => rows.label.hash(hasher),
        "provider" => rows.provider.hash(hasher),
        "port" => rows.port.hash(hasher),
        "service" => rows.service.hash(hasher),
        "dr" => rows.dr.hash(hasher),
        "dr_subset" => rows.dr_subset.hash(hasher),
        "sidecar" => rows.sidecar.hash(hasher),
        "secret" => rows.secret.hash(hasher),
        "ms" => rows.ms.hash(hasher),
        "ms_host" => rows.ms_host.hash(hasher),
        "ms_port" => rows.ms_port.hash(hasher),
        _ => {}
    }
}

fn store_projection(
    conn: &Connection,
    p: &Projection,
    source: Option<&SourceObject>,
    load: &mut Load,
) -> Result<i64, Error> {
    let k = &p.key;
    let (file, line) = match source.and_then(|s| s.origin.as_ref()) {
        Some(o) => (Some(o.file.as_str()), Some(o.line as i64)),
        None => (None, None),
    };
    let hashes = projection_hashes(&k.group, &k.kind, &p.rows);
    if let Load::Bulk { .. } = load {
        let inserted = conn.prepare_cached(
                "INSERT INTO object (grp, kind, ns, name, api_version, created, owner, contributors, managed, suppress, file, line, proj_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT (grp, kind, ns, name) DO NOTHING",
            )?
            .execute(params![
                k.group, k.kind, k.namespace, k.name, p.api_version, p.created, p.owner,
                p.contributors, p.managed, p.suppress, file, line, hashes
            ])?;
        if inserted == 1 {
            let id = conn.last_insert_rowid();
            for table in object_tables(&k.group, &k.kind) {
                insert_table(conn, id, &p.rows, table)?;
            }
            return Ok(id);
        }
        // The same key twice in one snapshot: rare, so rather than deleting the first one's rows
        // without indexes, build them now and store the rest of the batch the indexed way.
        load.restore_indexes(conn)?;
    }
    let existing: Option<(i64, Option<Vec<u8>>)> = conn
        .prepare_cached(
            "SELECT id, proj_hash FROM object WHERE grp = ?1 AND kind = ?2 AND ns = ?3 AND name = ?4",
        )?
        .query_row(params![k.group, k.kind, k.namespace, k.name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match existing {
        Some((id, stored)) => {
            let stored = stored
                .filter(|s| s.len() == hashes.len())
                .unwrap_or_default();
            for (i, table) in object_tables(&k.group, &k.kind).enumerate() {
                let slot = i * 8..i * 8 + 8;
                // rewrite only the tables whose rows changed
                if stored.get(slot.clone()) != hashes.get(slot) {
                    clear_table(conn, id, table)?;
                    insert_table(conn, id, &p.rows, table)?;
                }
            }
            conn.prepare_cached(
                "UPDATE object SET api_version = ?2, created = ?3, owner = ?4, contributors = ?5, managed = ?6, \
                 suppress = ?7, file = ?8, line = ?9, proj_hash = ?10 WHERE id = ?1",
            )?
            .execute(params![id, p.api_version, p.created, p.owner, p.contributors, p.managed, p.suppress, file, line, hashes])?;
            Ok(id)
        }
        None => {
            conn.prepare_cached(
                "INSERT INTO object (grp, kind, ns, name, api_version, created, owner, contributors, managed, suppress, file, line, proj_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                k.group,
                k.kind,
                k.namespace,
                k.name,
                p.api_version,
                p.created,
                p.owner,
                p.contributors,
                p.managed,
                p.suppress,
                file,
                line,
                hashes
            ])?;
            let id = conn.last_insert_rowid();
            for table in object_tables(&k.group, &k.kind) {
                insert_table(conn, id, &p.rows, table)?;
            }
            Ok(id)
        }
    }
}

/// Writes the rows of `table` for object `id`.
fn insert_table(
    conn: &Connection,
    id: i64,
    rows: &project::Rows,
    table: &str,
) -> Result<(), Error> {
    let wild = project::wild;
    match table {
        "undecodable" => {
            if let Some(message) = &rows.undecodable {
                conn.prepare_cached("INSERT INTO undecodable (obj, message) VALUES (?1, ?2)")?
                    .execute(params![id, message])?;
            }
        }
        "export_to" => {
            let mut s =
                conn.prepare_cached("INSERT INTO export_to (obj, scope, raw) VALUES (?1, ?2, ?3)")?;
            for (scope, raw) in &rows.export_to {
                s.execute(params![id, scope, raw])?;
            }
        }
        "vs" => {
            if let Some((mesh, export_all)) = rows.vs {
                conn.prepare_cached("INSERT INTO vs (obj, mesh, export_all) VALUES (?1, ?2, ?3)")?
                    .execute(params![id, mesh, export_all])?;
            }
        }
        "vs_host" => {
            let mut s = conn.prepare_cached(
                "INSERT INTO vs_host (obj, idx, host, fqdn, wild) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (i, (host, fqdn)) in rows.vs_host.iter().enumerate() {
                s.execute(params![id, i as i64, host, fqdn, wild(fqdn)])?;
            }
        }
        "vs_gateway" => {
            let mut s = conn.prepare_cached(
                "INSERT INTO vs_gateway (obj, idx, ref, gw_ns, gw_name) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (i, r, n, name) in &rows.vs_gateway {
                s.execute(params![id, i, r, n, name])?;
            }
        }
        "mesh_host" => {
            let mut s = conn.prepare_cached(
                "INSERT INTO mesh_host (obj, scope, fqdn, wild) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (scope, fqdn) in &rows.mesh_host {
                s.execute(params![id, scope, fqdn, wild(fqdn)])?;
            }
        }
        "dest" => {
            let mut s = conn.prepare_cached(
                "INSERT INTO dest (obj, idx, mirror, host, fqdn, port, subset, skey, path) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for d in &rows.dest {
                s.execute(params![
                    id, d.idx, d.mirror, d.host, d.fqdn, d.port, d.subset, d.skey, d.path
                ])?;
            }
        }
        "gateway" => {
            if let Some((sel, sel_n, n_servers)) = &rows.gateway {
                conn.prepare_cached(
                    "INSERT INTO gateway (obj, sel, sel_n, n_servers) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![id, sel, sel_n, n_servers])?;
            }
        }
        "gw_server" => {
            let mut s = conn.prepare_cached(
                "INSERT INTO gw_server (obj, sidx, hidx, port, protocol, bind, raw, vis_ns, host, wild, credential) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for v in &rows.gw_server {
                s.execute(params![
                    id,
                    v.sidx,
                    v.hidx,
                    v.port,
                    v.protocol,
                    v.bind,
                    v.raw,
                    v.vis_ns,
                    v.host,
                    wild(&v.host),
                    v.credential
                ])?;
            }
        }
        "selector" => {
            let mut s =
                conn.prepare_cached("INSERT INTO selector (obj, key, value) VALUES (?1, ?2, ?3)")?;
            for (k, v) in &rows.selector {
                s.execute(params![id, k, v])?;
            }
        }
        "label" => {
            let mut s =
                conn.prepare_cached("INSERT INTO label (obj, key, value) VALUES (?1, ?2, ?3)")?;
            for (k, v) in &rows.label {
                s.execute(params![id, k, v])?;
            }
        }
        "provider" => {
            let mut s = conn.prepare_cached(
                "INSERT INTO provider (obj, scope, raw, fqdn, wild, suffix) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (scope, raw, fqdn) in &rows.provider {
                let w = wild(fqdn);
                let suffix = if w { Some(&fqdn[1..]) } else { None };
                s.execute(params![id, scope, raw, fqdn, w, suffix])?;
            }
        }
        "port" => {
            let mut s = conn.prepare_cached(
                "INSERT INTO port (obj, number, name, protocol, target) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (n, name, protocol, target) in &rows.port {
                s.execute(params![id, n, name, protocol, target])?;
            }
        }
        "service" => {
            if let Some(sel_n) = rows.service {
                conn.prepare_cached("INSERT INTO service (obj, sel_n) VALUES (?1, ?2)")?
                    .execute(params![id, sel_n])?;
            }
        }
        "dr" => {
            if let Some((host, fqdn, skey, export_all, n_subsets)) = &rows.dr {
                conn.prepare_cached(
                    "INSERT INTO dr (obj, host, fqdn, skey, wild, export_all, n_subsets) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![id, host, fqdn, skey, wild(host), export_all, n_subsets])?;
            }
        }
        "dr_subset" => {
            let mut s = conn.prepare_cached("INSERT INTO dr_subset (obj, name) VALUES (?1, ?2)")?;
            for name in &rows.dr_subset {
                s.execute(params![id, name])?;
            }
        }
        "sidecar" => {
            if let Some(sel_n) = rows.sidecar {
                conn.prepare_cached("INSERT INTO sidecar (obj, sel_n) VALUES (?1, ?2)")?
                    .execute(params![id, sel_n])?;
            }
        }
        "secret" => {
            if let Some(t) = &rows.secret {
                conn.prepare_cached("INSERT INTO secret (obj, type) VALUES (?1, ?2)")?
                    .execute(params![id, t])?;
            }
        }
        "ms" => {
            if let Some((service_name, gw_ns, gw_name, managed, credential)) = &rows.ms {
                conn.prepare_cached(
                    "INSERT INTO ms (obj, service_name, gw_ns, gw_name, gw_managed, credential) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![id, service_name, gw_ns, gw_name, managed, credential])?;
            }
        }
        "ms_host" => {
            let mut s = conn.prepare_cached(
                "INSERT INTO ms_host (obj, idx, host, fqdn, wild) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (i, (host, fqdn)) in rows.ms_host.iter().enumerate() {
                s.execute(params![id, i as i64, host, fqdn, wild(fqdn)])?;
            }
        }
        "ms_port" => {
            let mut s = conn
                .prepare_cached("INSERT INTO ms_port (obj, port, protocol) VALUES (?1, ?2, ?3)")?;
            for (port, protocol) in &rows.ms_port {
                s.execute(params![id, port, protocol])?;
            }
        }
        _ => {}
    }
    Ok(())
}
