//! Storing objects. Two halves: [`prepare`] turns an input object into its projection and
//! per-table hashes without touching SQLite (a batch runs it on the calling thread while a second
//! thread writes), and [`store`] writes a prepared object through a [`Writer`].

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};
use std::sync::mpsc;

use rusqlite::{CachedStatement, Connection, OptionalExtension, Statement, ToSql, params};
use serde_json::Value;

use crate::error::Error;
use crate::model::{IngestOptions, IngestStats, ObjectKey, Origin, SourceObject};
use crate::project::{self, Projected, Projection};

/// A projection table: each holds rows of one object kind (or of several), keyed by `obj`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Table {
    ExportTo,
    Undecodable,
    VsHost,
    VsGateway,
    MeshHost,
    Dest,
    Gateway,
    GwServer,
    Selector,
    Label,
    Provider,
    Port,
    Dr,
    DrSubset,
    Sidecar,
    Secret,
    Ms,
    MsHost,
    MsPort,
}

const TABLE_COUNT: usize = 19;

impl Table {
    fn slot(self) -> usize {
        self as usize
    }

    fn insert_sql(self) -> &'static str {
        match self {
            Table::ExportTo => "INSERT INTO export_to (obj, scope, raw) VALUES (?1, ?2, ?3)",
            Table::Undecodable => "INSERT INTO undecodable (obj, message) VALUES (?1, ?2)",
            Table::VsHost => {
                "INSERT INTO vs_host (obj, idx, host, fqdn, wild) VALUES (?1, ?2, ?3, ?4, ?5)"
            }
            Table::VsGateway => {
                "INSERT INTO vs_gateway (obj, idx, ref, gw_ns, gw_name) VALUES (?1, ?2, ?3, ?4, ?5)"
            }
            Table::MeshHost => {
                "INSERT INTO mesh_host (obj, scope, fqdn, wild) VALUES (?1, ?2, ?3, ?4)"
            }
            Table::Dest => {
                "INSERT INTO dest (obj, idx, mirror, host, fqdn, port, subset, skey, path) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            }
            Table::Gateway => {
                "INSERT INTO gateway (obj, sel, sel_n, n_servers) VALUES (?1, ?2, ?3, ?4)"
            }
            Table::GwServer => {
                "INSERT INTO gw_server (obj, sidx, hidx, port, protocol, bind, raw, vis_ns, host, wild, credential, rbase) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            }
            Table::Selector => "INSERT INTO selector (obj, key, value) VALUES (?1, ?2, ?3)",
            Table::Label => "INSERT INTO label (obj, key, value) VALUES (?1, ?2, ?3)",
            Table::Provider => {
                "INSERT INTO provider (obj, scope, raw, fqdn, wild, suffix) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            }
            Table::Port => {
                "INSERT INTO port (obj, number, name, protocol, target) VALUES (?1, ?2, ?3, ?4, ?5)"
            }
            Table::Dr => {
                "INSERT INTO dr (obj, host, fqdn, skey, wild, export_all, n_subsets) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            }
            Table::DrSubset => "INSERT INTO dr_subset (obj, name) VALUES (?1, ?2)",
            Table::Sidecar => "INSERT INTO sidecar (obj, sel_n) VALUES (?1, ?2)",
            Table::Secret => "INSERT INTO secret (obj, type) VALUES (?1, ?2)",
            Table::Ms => {
                "INSERT INTO ms (obj, service_name, gw_ns, gw_name, gw_managed, credential) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            }
            Table::MsHost => {
                "INSERT INTO ms_host (obj, idx, host, fqdn, wild) VALUES (?1, ?2, ?3, ?4, ?5)"
            }
            Table::MsPort => "INSERT INTO ms_port (obj, port, protocol) VALUES (?1, ?2, ?3)",
        }
    }

    fn delete_sql(self) -> &'static str {
        match self {
            Table::ExportTo => "DELETE FROM export_to WHERE obj = ?1",
            Table::Undecodable => "DELETE FROM undecodable WHERE obj = ?1",
            Table::VsHost => "DELETE FROM vs_host WHERE obj = ?1",
            Table::VsGateway => "DELETE FROM vs_gateway WHERE obj = ?1",
            Table::MeshHost => "DELETE FROM mesh_host WHERE obj = ?1",
            Table::Dest => "DELETE FROM dest WHERE obj = ?1",
            Table::Gateway => "DELETE FROM gateway WHERE obj = ?1",
            Table::GwServer => "DELETE FROM gw_server WHERE obj = ?1",
            Table::Selector => "DELETE FROM selector WHERE obj = ?1",
            Table::Label => "DELETE FROM label WHERE obj = ?1",
            Table::Provider => "DELETE FROM provider WHERE obj = ?1",
            Table::Port => "DELETE FROM port WHERE obj = ?1",
            Table::Dr => "DELETE FROM dr WHERE obj = ?1",
            Table::DrSubset => "DELETE FROM dr_subset WHERE obj = ?1",
            Table::Sidecar => "DELETE FROM sidecar WHERE obj = ?1",
            Table::Secret => "DELETE FROM secret WHERE obj = ?1",
            Table::Ms => "DELETE FROM ms WHERE obj = ?1",
            Table::MsHost => "DELETE FROM ms_host WHERE obj = ?1",
            Table::MsPort => "DELETE FROM ms_port WHERE obj = ?1",
        }
    }

    /// Whether `rows` has nothing for this table (then no statement is needed).
    fn is_empty_in(self, rows: &project::Rows) -> bool {
        match self {
            Table::ExportTo => rows.export_to.is_empty(),
            Table::Undecodable => rows.undecodable.is_none(),
            Table::VsHost => rows.vs_host.is_empty(),
            Table::VsGateway => rows.vs_gateway.is_empty(),
            Table::MeshHost => rows.mesh_host.is_empty(),
            Table::Dest => rows.dest.is_empty(),
            Table::Gateway => rows.gateway.is_none(),
            Table::GwServer => rows.gw_server.is_empty(),
            Table::Selector => rows.selector.is_empty(),
            Table::Label => rows.label.is_empty(),
            Table::Provider => rows.provider.is_empty(),
            Table::Port => rows.port.is_empty(),
            Table::Dr => rows.dr.is_none(),
            Table::DrSubset => rows.dr_subset.is_empty(),
            Table::Sidecar => rows.sidecar.is_none(),
            Table::Secret => rows.secret.is_none(),
            Table::Ms => rows.ms.is_none(),
            Table::MsHost => rows.ms_host.is_empty(),
            Table::MsPort => rows.ms_port.is_empty(),
        }
    }

    /// Hashes the part of `rows` that [`insert_rows`] writes into this table.
    fn hash_rows(self, rows: &project::Rows, hasher: &mut DefaultHasher) {
        match self {
            Table::ExportTo => rows.export_to.hash(hasher),
            Table::Undecodable => rows.undecodable.hash(hasher),
            Table::VsHost => rows.vs_host.hash(hasher),
            Table::VsGateway => rows.vs_gateway.hash(hasher),
            Table::MeshHost => rows.mesh_host.hash(hasher),
            Table::Dest => rows.dest.hash(hasher),
            Table::Gateway => rows.gateway.hash(hasher),
            Table::GwServer => rows.gw_server.hash(hasher),
            Table::Selector => rows.selector.hash(hasher),
            Table::Label => rows.label.hash(hasher),
            Table::Provider => rows.provider.hash(hasher),
            Table::Port => rows.port.hash(hasher),
            Table::Dr => rows.dr.hash(hasher),
            Table::DrSubset => rows.dr_subset.hash(hasher),
            Table::Sidecar => rows.sidecar.hash(hasher),
            Table::Secret => rows.secret.hash(hasher),
            Table::Ms => rows.ms.hash(hasher),
            Table::MsHost => rows.ms_host.hash(hasher),
            Table::MsPort => rows.ms_port.hash(hasher),
        }
    }
}

/// The tables of a kind's own projection (`export_to` and `undecodable` come on top for all).
fn tables_of(group: &str, kind: &str) -> &'static [Table] {
    use Table::*;
    match (group, kind) {
        ("networking.istio.io", "VirtualService") => &[VsHost, VsGateway, MeshHost, Dest],
        ("networking.istio.io", "Gateway") => &[Gateway, GwServer, Selector],
        ("networking.istio.io", "DestinationRule") => &[Dr, DrSubset],
        ("networking.istio.io", "ServiceEntry") => &[Provider, Port],
        ("networking.istio.io", "Sidecar") => &[Sidecar, Selector],
        ("", "Service") => &[Selector, Provider, Port],
        ("", "Pod") => &[Label],
        ("", "Secret") => &[Secret],
        ("gateway.networking.k8s.io", "Gateway") => &[GwServer],
        ("mesh.istio.operator", "MeshService") => &[Ms, MsHost, MsPort],
        _ => &[],
    }
}

/// Every table an object of this kind can have rows in, in the order of its `proj_hash`.
fn object_tables(group: &str, kind: &str) -> impl Iterator<Item = Table> {
    tables_of(group, kind)
        .iter()
        .chain([Table::ExportTo, Table::Undecodable].iter())
        .copied()
}

/// The object table's statements (slots after the tables' inserts and deletes).
#[derive(Clone, Copy)]
enum ObjectSql {
    Insert,
    Lookup,
    Update,
    UpdateHashes,
    Delete,
}

impl ObjectSql {
    fn slot(self) -> usize {
        2 * TABLE_COUNT + self as usize
    }

    fn sql(self) -> &'static str {
        match self {
            ObjectSql::Insert => {
                "INSERT INTO object (grp, kind, ns, name, api_version, created, owner, contributors, managed, suppress, file, line, proj_hash, \
                 vs_mesh, vs_export_all, svc_sel_n) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
            }
            ObjectSql::Lookup => {
                "SELECT id, proj_hash FROM object WHERE grp = ?1 AND kind = ?2 AND ns = ?3 AND name = ?4"
            }
            // the parameters of `Insert` (the key, ?1 to ?4, unused), then the id
            ObjectSql::Update => {
                "UPDATE object SET api_version = ?5, created = ?6, owner = ?7, contributors = ?8, managed = ?9, \
                 suppress = ?10, file = ?11, line = ?12, proj_hash = ?13, vs_mesh = ?14, vs_export_all = ?15, \
                 svc_sel_n = ?16 WHERE id = ?17"
            }
            ObjectSql::UpdateHashes => "UPDATE object SET proj_hash = ?2 WHERE id = ?1",
            ObjectSql::Delete => "DELETE FROM object WHERE id = ?1",
        }
    }
}

const SLOT_COUNT: usize = 2 * TABLE_COUNT + 5;

/// Runs the store's statements. A batch holds them prepared for its whole length: taking a
/// statement from rusqlite's cache hashes and copies its SQL text on every use, a tenth of a bulk
/// load at one use per table per object. A single write (a watch event) uses the cache.
pub(crate) struct Writer<'c> {
    conn: &'c Connection,
    held: Option<Vec<Option<Statement<'c>>>>,
}

/// A statement of a [`Writer`]: from the cache, or held by the writer.
enum Stmt<'w, 'c> {
    Cached(CachedStatement<'c>),
    Held(&'w mut Statement<'c>),
}

impl<'c> Deref for Stmt<'_, 'c> {
    type Target = Statement<'c>;
    fn deref(&self) -> &Statement<'c> {
        match self {
            Stmt::Cached(s) => s,
            Stmt::Held(s) => s,
        }
    }
}

impl DerefMut for Stmt<'_, '_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Stmt::Cached(s) => s,
            Stmt::Held(s) => s,
        }
    }
}

impl<'c> Writer<'c> {
    /// A writer for one or a few writes: statements come from the connection's cache.
    pub(crate) fn cached(conn: &'c Connection) -> Self {
        Writer { conn, held: None }
    }

    /// A writer for a batch: each statement is prepared on first use and held until the writer
    /// is dropped.
    pub(crate) fn held(conn: &'c Connection) -> Self {
        Writer {
            conn,
            held: Some((0..SLOT_COUNT).map(|_| None).collect()),
        }
    }

    pub(crate) fn connection(&self) -> &'c Connection {
        self.conn
    }

    fn statement(&mut self, slot: usize, sql: &'static str) -> Result<Stmt<'_, 'c>, Error> {
        let conn = self.conn;
        match &mut self.held {
            None => Ok(Stmt::Cached(conn.prepare_cached(sql)?)),
            Some(held) => match &mut held[slot] {
                Some(statement) => Ok(Stmt::Held(statement)),
                empty @ None => Ok(Stmt::Held(empty.insert(conn.prepare(sql)?))),
            },
        }
    }

    fn object(&mut self, sql: ObjectSql) -> Result<Stmt<'_, 'c>, Error> {
        self.statement(sql.slot(), sql.sql())
    }

    fn insert(&mut self, table: Table) -> Result<Stmt<'_, 'c>, Error> {
        self.statement(table.slot(), table.insert_sql())
    }

    fn clear(&mut self, id: i64, table: Table) -> Result<(), Error> {
        self.statement(TABLE_COUNT + table.slot(), table.delete_sql())?
            .execute([id])?;
        Ok(())
    }
}

/// How a transaction stores objects.
pub(crate) enum Load {
    /// Every index in place: keys are looked up, replaced objects' rows deleted (upserts, and
    /// batches into a non-empty engine).
    Indexed,
    /// A batch into an empty engine: every index (the object key's too) is dropped for the load
    /// and built once at the end (cheaper than maintaining them row by row), and objects are
    /// inserted without looking their key up.
    Bulk {
        /// `CREATE INDEX` statements of the dropped indexes.
        indexes: Vec<String>,
        /// Hashes of the keys inserted so far: a repeated key (or a hash collision) ends the bulk
        /// mode, since only the key index can tell the rows to replace.
        keys: HashSet<u64>,
    },
}

/// Whether the engine holds no object (a batch then loads in bulk).
pub(crate) fn is_empty(conn: &Connection) -> Result<bool, Error> {
    Ok(conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM object)", [], |r| r.get(0))?)
}

impl Load {
    /// `Bulk` into an engine that holds nothing yet ([`is_empty`], asked by the caller before the
    /// transaction), else `Indexed`.
    pub(crate) fn start(conn: &Connection, into_empty: bool) -> Result<Load, Error> {
        if !into_empty {
            return Ok(Load::Indexed);
        }
        let dropped: Vec<(String, String)> = {
            let mut stmt = conn.prepare(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
                 AND tbl_name <> 'refinery_schema_history' ORDER BY name",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut indexes = Vec::with_capacity(dropped.len());
        for (name, sql) in dropped {
            conn.execute_batch(&format!("DROP INDEX \"{name}\""))?;
            indexes.push(sql);
        }
        Ok(Load::Bulk {
            indexes,
            keys: HashSet::new(),
        })
    }

    /// Whether `key` can be inserted without a lookup: in bulk mode, unless it may have been
    /// inserted before in this load (then the indexes are built and the load goes on indexed).
    fn insert_blindly(&mut self, key: &ObjectKey, conn: &Connection) -> Result<bool, Error> {
        let Load::Bulk { keys, .. } = self else {
            return Ok(false);
        };
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        if keys.insert(hasher.finish()) {
            return Ok(true);
        }
        self.restore_indexes(conn)?;
        Ok(false)
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
    pub(crate) fn finish(mut self, conn: &Connection) -> Result<(), Error> {
        self.restore_indexes(conn)
    }
}

/// One input object made ready for SQLite without touching it.
pub(crate) enum Prepared {
    /// A kind the engine does not check: `apiVersion/kind`.
    Unknown(String),
    /// No identity and no file to name it by: nothing is stored; what is missing.
    NoIdentity(String),
    Store {
        projection: Box<Projection>,
        /// Its [`projection_hashes`].
        hashes: Vec<u8>,
        origin: Option<Origin>,
    },
}

/// Projects one object and hashes its rows. Objects without identity that come from a file are
/// kept, as `MSH0001`, under a synthetic name so the run reports them.
pub(crate) fn prepare(object: SourceObject, options: &IngestOptions) -> Prepared {
    let projection = match project::project(&object.value, &options.default_namespace) {
        Projected::Unknown(kind) => return Prepared::Unknown(kind),
        Projected::Object(projection) => projection,
        Projected::NoIdentity(message) => {
            let Some(origin) = &object.origin else {
                return Prepared::NoIdentity(message);
            };
            let text = |field: &str, default: &'static str| {
                object
                    .value
                    .get(field)
                    .and_then(Value::as_str)
                    .unwrap_or(default)
                    .to_string()
            };
            let api_version = text("apiVersion", "v1");
            let kind = text("kind", "Unknown");
            let group = crate::model::group_of(&api_version);
            if !project::is_known(group, &kind) {
                return Prepared::Unknown(format!("{api_version}/{kind}"));
            }
            let key = ObjectKey::new(
                group,
                &kind,
                &options.default_namespace,
                &format!("(unnamed {}:{})", origin.file, origin.line),
            );
            Box::new(project::undecodable(&key, &api_version, &message))
        }
    };
    let hashes = projection_hashes(&projection, object.origin.as_ref());
    Prepared::Store {
        projection,
        hashes,
        origin: object.origin,
    }
}

/// Stores a prepared object; returns its key (None for unknown kinds and objects without
/// identity).
pub(crate) fn store<'p>(
    writer: &mut Writer,
    prepared: &'p Prepared,
    stats: &mut IngestStats,
    load: &mut Load,
) -> Result<Option<&'p ObjectKey>, Error> {
    match prepared {
        Prepared::Unknown(kind) => {
            count(&mut stats.skipped_unknown, kind);
            Ok(None)
        }
        Prepared::NoIdentity(_) => Ok(None),
        Prepared::Store {
            projection,
            hashes,
            origin,
        } => {
            store_projection(writer, projection, hashes, origin.as_ref(), load)?;
            if projection.rows.undecodable.is_some() {
                stats.undecodable += 1;
            }
            stats.total += 1;
            count(&mut stats.by_kind, &projection.key.kind);
            Ok(Some(&projection.key))
        }
    }
}

/// Counts one more `key`, copying the key only the first time.
fn count(counts: &mut BTreeMap<String, u64>, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.to_string(), 1);
        }
    }
}

/// A batch goes to the writing thread in chunks of this many objects; a batch no larger is
/// written on the calling thread (a thread costs more than writing a few hundred objects).
const CHUNK: usize = 512;

/// Loads a batch in one transaction. The calling thread projects and hashes the objects and frees
/// them; a second thread, a chunk behind, writes them to SQLite and hands each chunk back to be
/// freed where it was allocated. So every allocation is freed on the thread that made it (the
/// input values, usually, on the caller's), and SQLite's pages come from the writing thread's
/// own malloc arena: freeing across threads took glibc's arena locks and had SQLite's page
/// allocations consolidate the other thread's freed chunks (a fifth of the writer's time).
pub(crate) fn load_batch<I>(
    conn: &mut Connection,
    into_empty: bool,
    objects: I,
    options: &IngestOptions,
) -> Result<IngestStats, Error>
where
    I: IntoIterator,
    I::Item: Into<SourceObject>,
{
    let mut objects = objects.into_iter();
    let mut next_chunk = || -> Vec<Prepared> {
        objects
            .by_ref()
            .take(CHUNK)
            .map(|object| prepare(object.into(), options))
            .collect()
    };
    let first = next_chunk();
    if first.len() < CHUNK {
        return write_batch(conn, into_empty, [Some(first), None], drop);
    }
    std::thread::scope(|scope| {
        let (to_writer, chunks) = mpsc::sync_channel::<Option<Vec<Prepared>>>(4);
        let (to_free, written) = mpsc::channel::<Vec<Prepared>>();
        let writing = scope.spawn(move || {
            write_batch(conn, into_empty, chunks, |chunk| {
                // the caller stops listening only once this thread is done
                let _ = to_free.send(chunk);
            })
        });
        let mut chunk = first;
        loop {
            let last = chunk.len() < CHUNK;
            // the writer failed and stopped listening: its error is in the join below
            if to_writer.send(Some(chunk)).is_err() {
                break;
            }
            written.try_iter().for_each(drop);
            if last {
                let _ = to_writer.send(None);
                break;
            }
            chunk = next_chunk();
        }
        drop(to_writer);
        let stats = match writing.join() {
            Ok(stats) => stats,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        written.try_iter().for_each(drop);
        stats
    })
}

/// Writes the chunks in one transaction, passing each on to `written` once stored; commits at
/// the `None` that ends them. Chunks that end without it (the projecting thread panicked) leave
/// nothing behind.
fn write_batch(
    conn: &mut Connection,
    into_empty: bool,
    chunks: impl IntoIterator<Item = Option<Vec<Prepared>>>,
    mut written: impl FnMut(Vec<Prepared>),
) -> Result<IngestStats, Error> {
    let mut stats = IngestStats::default();
    let tx = conn.transaction()?;
    let mut load = Load::start(&tx, into_empty)?;
    let mut writer = Writer::held(&tx);
    for chunk in chunks {
        let Some(chunk) = chunk else {
            drop(writer);
            load.finish(&tx)?;
            tx.commit()?;
            return Ok(stats);
        };
        for object in &chunk {
            store(&mut writer, object, &mut stats, &mut load)?;
        }
        written(chunk);
    }
    Err(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERRUPT),
        Some("the batch's input ended early".into()),
    )
    .into())
}

/// Deletes every projection row of an object (not its `object` row).
pub(crate) fn clear_rows(
    writer: &mut Writer,
    id: i64,
    group: &str,
    kind: &str,
) -> Result<(), Error> {
    for table in object_tables(group, kind) {
        writer.clear(id, table)?;
    }
    Ok(())
}

/// Deletes an object and its projection rows.
pub(crate) fn delete_object(writer: &mut Writer, id: i64, key: &ObjectKey) -> Result<(), Error> {
    clear_rows(writer, id, &key.group, &key.kind)?;
    writer.object(ObjectSql::Delete)?.execute([id])?;
    Ok(())
}

/// A projection's `proj_hash`: per table of its kind, a hash of the rows it writes there, then a
/// hash of the object row's own columns (the last 8 bytes).
fn projection_hashes(p: &Projection, origin: Option<&Origin>) -> Vec<u8> {
    let mut hasher = DefaultHasher::new();
    (&p.api_version, &p.created, &p.owner, &p.contributors).hash(&mut hasher);
    (p.managed, &p.suppress).hash(&mut hasher);
    (origin.map(|o| &o.file), origin.map(|o| o.line)).hash(&mut hasher);
    (p.rows.vs_mesh, p.rows.vs_export_all, p.rows.svc_sel_n).hash(&mut hasher);
    let object_row = hasher.finish().to_le_bytes();
    object_tables(&p.key.group, &p.key.kind)
        .flat_map(|table| {
            let mut hasher = DefaultHasher::new();
            table.hash_rows(&p.rows, &mut hasher);
            hasher.finish().to_le_bytes()
        })
        .chain(object_row)
        .collect()
}

/// Stores a projection that did not come from a batch (`Engine::record_undecodable`).
pub(crate) fn store_single(
    writer: &mut Writer,
    projection: &Projection,
    load: &mut Load,
) -> Result<i64, Error> {
    let hashes = projection_hashes(projection, None);
    store_projection(writer, projection, &hashes, None, load)
}

/// Stores a projection whose [`projection_hashes`] are `hashes`.
fn store_projection(
    writer: &mut Writer,
    p: &Projection,
    hashes: &[u8],
    origin: Option<&Origin>,
    load: &mut Load,
) -> Result<i64, Error> {
    let k = &p.key;
    let (file, line) = match origin {
        Some(o) => (Some(o.file.as_str()), Some(o.line as i64)),
        None => (None, None),
    };
    let object_slot = hashes.len().saturating_sub(8)..hashes.len();
    if load.insert_blindly(k, writer.connection())? {
        return insert_object(writer, p, hashes, file, line);
    }
    let existing: Option<(i64, Option<Vec<u8>>)> = writer
        .object(ObjectSql::Lookup)?
        .query_row(params![k.group, k.kind, k.namespace, k.name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match existing {
        Some((id, stored)) => {
            let stored = stored
                .filter(|s| s.len() == hashes.len())
                .unwrap_or_default();
            let mut tables_changed = false;
            for (i, table) in object_tables(&k.group, &k.kind).enumerate() {
                let slot = i * 8..i * 8 + 8;
                // rewrite only the tables whose rows changed
                if stored.get(slot.clone()) != hashes.get(slot) {
                    writer.clear(id, table)?;
                    insert_rows(writer, id, &p.rows, table)?;
                    tables_changed = true;
                }
            }
            // The object row is rewritten only when its own columns changed: an update assigning
            // the indexed `owner` and `suppress` columns maintains their indexes even when the
            // values are the same.
            if stored.get(object_slot.clone()) != hashes.get(object_slot) {
                let mut values = object_values(p, &hashes, &file, &line).to_vec();
                values.push(&id);
                writer.object(ObjectSql::Update)?.execute(&values[..])?;
            } else if tables_changed {
                writer
                    .object(ObjectSql::UpdateHashes)?
                    .execute(params![id, hashes])?;
            }
            Ok(id)
        }
        None => insert_object(writer, p, hashes, file, line),
    }
}

/// The `object` row's values, in the order of [`ObjectSql::Insert`]'s parameters.
fn object_values<'a>(
    p: &'a Projection,
    hashes: &'a &[u8],
    file: &'a Option<&str>,
    line: &'a Option<i64>,
) -> [&'a dyn ToSql; 16] {
    let k = &p.key;
    [
        &k.group,
        &k.kind,
        &k.namespace,
        &k.name,
        &p.api_version,
        &p.created,
        &p.owner,
        &p.contributors,
        &p.managed,
        &p.suppress,
        file,
        line,
        hashes,
        &p.rows.vs_mesh,
        &p.rows.vs_export_all,
        &p.rows.svc_sel_n,
    ]
}

/// Inserts a new object and all its rows.
fn insert_object(
    writer: &mut Writer,
    p: &Projection,
    hashes: &[u8],
    file: Option<&str>,
    line: Option<i64>,
) -> Result<i64, Error> {
    let k = &p.key;
    writer
        .object(ObjectSql::Insert)?
        .execute(&object_values(p, &hashes, &file, &line)[..])?;
    let id = writer.connection().last_insert_rowid();
    for table in object_tables(&k.group, &k.kind) {
        insert_rows(writer, id, &p.rows, table)?;
    }
    Ok(id)
}

/// Writes the rows of `table` for object `id`.
fn insert_rows(
    writer: &mut Writer,
    id: i64,
    rows: &project::Rows,
    table: Table,
) -> Result<(), Error> {
    if table.is_empty_in(rows) {
        return Ok(());
    }
    let wild = project::wild;
    let mut s = writer.insert(table)?;
    match table {
        Table::Undecodable => {
            if let Some(message) = &rows.undecodable {
                s.execute(params![id, message])?;
            }
        }
        Table::ExportTo => {
            for (scope, raw) in &rows.export_to {
                s.execute(params![id, scope, raw])?;
            }
        }
        Table::VsHost => {
            for (i, (host, fqdn)) in rows.vs_host.iter().enumerate() {
                s.execute(params![id, i as i64, host, fqdn, wild(fqdn)])?;
            }
        }
        Table::VsGateway => {
            for (i, r, n, name) in &rows.vs_gateway {
                s.execute(params![id, i, r, n, name])?;
            }
        }
        Table::MeshHost => {
            for (scope, fqdn) in &rows.mesh_host {
                s.execute(params![id, scope, fqdn, wild(fqdn)])?;
            }
        }
        Table::Dest => {
            for d in &rows.dest {
                s.execute(params![
                    id, d.idx, d.mirror, d.host, d.fqdn, d.port, d.subset, d.skey, d.path
                ])?;
            }
        }
        Table::Gateway => {
            if let Some((sel, sel_n, n_servers)) = &rows.gateway {
                s.execute(params![id, sel, sel_n, n_servers])?;
            }
        }
        Table::GwServer => {
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
                    v.credential,
                    crate::host::reversed_base(&v.host)
                ])?;
            }
        }
        Table::Selector => {
            for (k, v) in &rows.selector {
                s.execute(params![id, k, v])?;
            }
        }
        Table::Label => {
            for (k, v) in &rows.label {
                s.execute(params![id, k, v])?;
            }
        }
        Table::Provider => {
            for (scope, raw, fqdn) in &rows.provider {
                let w = wild(fqdn);
                let suffix = if w { Some(&fqdn[1..]) } else { None };
                s.execute(params![id, scope, raw, fqdn, w, suffix])?;
            }
        }
        Table::Port => {
            for (n, name, protocol, target) in &rows.port {
                s.execute(params![id, n, name, protocol, target])?;
            }
        }
        Table::Dr => {
            if let Some((host, fqdn, skey, export_all, n_subsets)) = &rows.dr {
                s.execute(params![
                    id,
                    host,
                    fqdn,
                    skey,
                    wild(host),
                    export_all,
                    n_subsets
                ])?;
            }
        }
        Table::DrSubset => {
            for name in &rows.dr_subset {
                s.execute(params![id, name])?;
            }
        }
        Table::Sidecar => {
            if let Some(sel_n) = rows.sidecar {
                s.execute(params![id, sel_n])?;
            }
        }
        Table::Secret => {
            if let Some(t) = &rows.secret {
                s.execute(params![id, t])?;
            }
        }
        Table::Ms => {
            if let Some((service_name, gw_ns, gw_name, managed, credential)) = &rows.ms {
                s.execute(params![
                    id,
                    service_name,
                    gw_ns,
                    gw_name,
                    managed,
                    credential
                ])?;
            }
        }
        Table::MsHost => {
            for (i, (host, fqdn)) in rows.ms_host.iter().enumerate() {
                s.execute(params![id, i as i64, host, fqdn, wild(fqdn)])?;
            }
        }
        Table::MsPort => {
            for (port, protocol) in &rows.ms_port {
                s.execute(params![id, port, protocol])?;
            }
        }
    }
    Ok(())
}
