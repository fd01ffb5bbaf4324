//! The engine: a SQLite connection holding the projections, and the operations on it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
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
use crate::project;
use crate::rules::{self, Analysis, Hit, Row};
use crate::store::{self, Load, Prepared, Writer};
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
    /// Per analysis, its [`Analysis::targeted_by_kind`] queries.
    targeted_kind_sql: Vec<Vec<(&'static str, String)>>,
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

/// Per-connection lookaside (slot size, slots): SQLite serves its small, short-lived allocations
/// (cursors, bound values, records) from these instead of malloc. The default (1200 bytes × 40) is
/// taken up by the prepared statements the engine holds, after which every statement step went to
/// malloc: 3.3 M SQLite allocations in a 100k-mesh batch ingest, 1.6 M with these slots (≈ 600 KB).
const LOOKASIDE: (i32, i32) = (1200, 512);

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

/// Sets the connection's lookaside memory; only possible before it has allocated any.
fn set_lookaside(conn: &Connection, (slot_size, slots): (i32, i32)) -> Result<(), Error> {
    // SAFETY: the handle is this open connection's, used on this thread; a null buffer makes
    // SQLite allocate the slots itself; the variadic arguments are the (void*, int, int) that
    // SQLITE_DBCONFIG_LOOKASIDE takes.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            slot_size,
            slots,
        )
    };
    if rc == rusqlite::ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rc), None).into())
    }
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
    conn.create_scalar_function("host_rbase", 1, flags, |ctx| {
        Ok(crate::host::reversed_base(
            ctx.get_raw(0).as_str().unwrap_or(""),
        ))
    })?;
    conn.create_scalar_function("host_rbase_prefixes", 1, flags, |ctx| {
        let reversed = crate::host::reversed_base(ctx.get_raw(0).as_str().unwrap_or(""));
        let prefixes: Vec<&str> = reversed
            .char_indices()
            .map(|(i, _)| &reversed[..i])
            .chain([reversed.as_str()])
            .collect();
        serde_json::to_string(&prefixes).map_err(|e| rusqlite::Error::UserFunctionError(e.into()))
    })?;
    conn.create_scalar_function("ends_with", 2, flags, |ctx| {
        let a = ctx.get_raw(0).as_str().unwrap_or("");
        let b = ctx.get_raw(1).as_str().unwrap_or("");
        Ok(a.ends_with(b))
    })?;
    Ok(())
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
        set_lookaside(&conn, LOOKASIDE)?;
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
        let targeted_kind_sql = analyses
            .iter()
            .map(|a| a.targeted_sql_by_kind().collect())
            .collect();
        Ok(Engine {
            conn,
            options: IngestOptions::default(),
            suppressions: Vec::new(),
            last_ingest: None,
            full_sql,
            targeted_sql,
            targeted_kind_sql,
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
    ///
    /// More than 512 objects are written to SQLite by a second thread that this call starts and
    /// joins, while the calling thread reads and projects the input (see the crate's README,
    /// "Threading"). If the input iterator panics, nothing of the batch is kept and the panic
    /// goes on.
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
        // Into an empty engine the load drops the indexes and builds them at the end. With
        // temporary storage in memory, SQLite's sorter gives up its single growing buffer and
        // allocates every index entry on its own (1.3 M mallocs at 100k); with the default it
        // keeps one buffer up to the page cache size (`BULK_CACHE_SIZE`) and spills to a
        // temporary file only beyond it. Queries keep memory for their temporary tables.
        let bulk = store::is_empty(&self.conn)?;
        if bulk {
            self.conn.pragma_update(None, "temp_store", "DEFAULT")?;
        }
        // The settings go back even when the input panics (the transaction has rolled back).
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store::load_batch(&mut self.conn, bulk, objects, &self.options)
        }));
        if bulk {
            self.conn.pragma_update(None, "temp_store", "MEMORY")?;
        }
        self.forget_present_kinds(None);
        if let Some(size) = default_cache_size {
            self.conn.pragma_update(None, "cache_size", size)?;
        }
        let stats = match loaded {
            Ok(loaded) => loaded?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        self.last_ingest = Some(started.elapsed());
        Ok(stats)
    }

    /// Inserts or replaces one object (a watch event). Returns its key, or `None` for a kind the
    /// engine does not check. An object that cannot be projected is stored as an `MSH0001`
    /// finding; an object without apiVersion, kind or name is an [`Error::Identity`].
    pub fn upsert(&mut self, object: impl Into<SourceObject>) -> Result<Option<ObjectKey>, Error> {
        let prepared = store::prepare(object.into(), &self.options);
        if let Prepared::NoIdentity(message) = prepared {
            return Err(Error::Identity(message));
        }
        let mut stats = IngestStats::default();
        let tx = self.conn.transaction()?;
        let key = store::store(
            &mut Writer::cached(&tx),
            &prepared,
            &mut stats,
            &mut Load::Indexed,
        )?
        .cloned();
        tx.commit()?;
        if let Some(key) = &key {
            self.forget_present_kinds(Some(key));
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
            store::delete_object(&mut Writer::cached(&tx), id, key)?;
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
        store::store_single(&mut Writer::cached(&tx), &projection, &mut Load::Indexed)?;
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
            let sql = self.targeted_kind_sql[i]
                .iter()
                .find(|(kind, _)| *kind == key.kind)
                .map_or(&self.targeted_sql[i], |(_, sql)| sql);
            let rows = query_rows(&self.conn, sql, [id])?;
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
