//! The SQL text of the backend's statements (with the configured schema
//! filled in) and the column arrays of the entry upsert. Every write
//! statement takes whole arrays (`UNNEST`), so a batch costs one statement
//! per kind of change, not one per op.

use crate::rows;
use crate::schema::quoted;

/// The SQL text of every statement, with the schema filled in.
pub(crate) struct Sql {
    pub(crate) catalog: String,
    pub(crate) insert_maps: String,
    pub(crate) upsert_entries: String,
    pub(crate) delete_entries: String,
    pub(crate) add_tombstones: String,
    pub(crate) remove_tombstones: String,
    pub(crate) map_kind: String,
    pub(crate) map_entries: String,
    pub(crate) map_keys: String,
    pub(crate) some_entries: String,
    pub(crate) map_tombstones: String,
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Self {
        let q = quoted(schema);
        Self {
            catalog: format!("SELECT map_name, kind FROM {q}.hangar_maps ORDER BY map_name"),
            insert_maps: format!(
                "INSERT INTO {q}.hangar_maps (map_name, kind) \
                 SELECT * FROM UNNEST($1::text[], $2::int2[]) ON CONFLICT (map_name) DO NOTHING"
            ),
            upsert_entries: format!(
                "INSERT INTO {q}.hangar_entries \
                 (map_name, key, partition_id, kind, hlc_millis, hlc_counter, hlc_node, value) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int2[], \
                 $5::int8[], $6::int8[], $7::text[], $8::bytea[]) \
                 ON CONFLICT (map_name, key) DO UPDATE SET partition_id = EXCLUDED.partition_id, \
                 kind = EXCLUDED.kind, hlc_millis = EXCLUDED.hlc_millis, \
                 hlc_counter = EXCLUDED.hlc_counter, hlc_node = EXCLUDED.hlc_node, \
                 value = EXCLUDED.value"
            ),
            delete_entries: format!(
                "DELETE FROM {q}.hangar_entries e USING UNNEST($1::text[], $2::text[]) AS d(m, k) \
                 WHERE e.map_name = d.m COLLATE \"C\" AND e.key = d.k COLLATE \"C\""
            ),
            add_tombstones: format!(
                "INSERT INTO {q}.hangar_or_tombstones (map_name, tag) \
                 SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING"
            ),
            remove_tombstones: format!(
                "DELETE FROM {q}.hangar_or_tombstones t \
                 USING UNNEST($1::text[], $2::text[]) AS d(m, g) \
                 WHERE t.map_name = d.m COLLATE \"C\" AND t.tag = d.g COLLATE \"C\""
            ),
            map_kind: format!("SELECT kind FROM {q}.hangar_maps WHERE map_name = $1"),
            map_entries: format!(
                "SELECT key, kind, value FROM {q}.hangar_entries WHERE map_name = $1 ORDER BY key"
            ),
            map_keys: format!(
                "SELECT key FROM {q}.hangar_entries WHERE map_name = $1 ORDER BY key"
            ),
            some_entries: format!(
                "SELECT key, kind, value FROM {q}.hangar_entries \
                 WHERE map_name = $1 AND key = ANY($2::text[]) ORDER BY key"
            ),
            map_tombstones: format!(
                "SELECT tag FROM {q}.hangar_or_tombstones WHERE map_name = $1 ORDER BY tag"
            ),
        }
    }
}

/// The columns of the entry upsert, one array per column.
#[derive(Default)]
pub(crate) struct PutColumns<'a> {
    pub(crate) maps: Vec<&'a str>,
    pub(crate) keys: Vec<&'a str>,
    pub(crate) partitions: Vec<i32>,
    pub(crate) kinds: Vec<i16>,
    pub(crate) millis: Vec<Option<i64>>,
    pub(crate) counters: Vec<Option<i64>>,
    pub(crate) nodes: Vec<Option<String>>,
    pub(crate) values: Vec<Vec<u8>>,
}

impl<'a> PutColumns<'a> {
    pub(crate) fn push(&mut self, map: &'a str, key: &'a str, row: rows::EntryRow) {
        self.maps.push(map);
        self.keys.push(key);
        self.partitions.push(row.partition);
        self.kinds.push(row.kind);
        self.millis.push(row.hlc_millis);
        self.counters.push(row.hlc_counter);
        self.nodes.push(row.hlc_node);
        self.values.push(row.value);
    }
}
