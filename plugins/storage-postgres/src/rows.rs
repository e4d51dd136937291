//! How one stored entry becomes one row of `hangar_entries` and back:
//! its kind, its HLC timestamp columns, its partition and its msgpack value.

use hangar_core::{partition_of, LwwRecord, MapKind, OrRecord, Timestamp};
use hangar_storage::persistence::{PersistenceError, StoredEntry};

/// The `kind` column of an LWW entry or map.
pub const KIND_LWW: i16 = 0;
/// The `kind` column of an OR entry or map.
pub const KIND_OR: i16 = 1;

/// The `kind` column of `kind`.
#[must_use]
pub fn kind_code(kind: MapKind) -> i16 {
    match kind {
        MapKind::Lww => KIND_LWW,
        MapKind::Or => KIND_OR,
    }
}

/// The kind of a `kind` column; `location` names the row for the error.
///
/// # Errors
/// [`PersistenceError::Corrupt`] for a code this plugin never writes.
pub fn kind_of(code: i16, location: &str) -> Result<MapKind, PersistenceError> {
    match code {
        KIND_LWW => Ok(MapKind::Lww),
        KIND_OR => Ok(MapKind::Or),
        other => Err(PersistenceError::Corrupt {
            location: location.to_string(),
            reason: format!("kind {other}, expected 0 (LWW) or 1 (OR)"),
        }),
    }
}

/// The columns of one entry row, except map name and key.
#[derive(Debug)]
pub struct EntryRow {
    /// `partition_of(key)`.
    pub partition: i32,
    /// [`KIND_LWW`] or [`KIND_OR`].
    pub kind: i16,
    /// The entry's HLC millis (`None` for an OR key without records).
    pub hlc_millis: Option<i64>,
    /// The HLC counter.
    pub hlc_counter: Option<i64>,
    /// The HLC node id.
    pub hlc_node: Option<String>,
    /// msgpack of the [`LwwRecord`], or of the OR key's `Vec<OrRecord>`.
    pub value: Vec<u8>,
}

fn hlc(t: &Timestamp) -> (Option<i64>, Option<i64>, Option<String>) {
    (
        Some(i64::try_from(t.millis).unwrap_or(i64::MAX)),
        Some(i64::from(t.counter)),
        Some(t.node_id.to_string()),
    )
}

/// Encodes `entry` of `key`.
///
/// # Errors
/// [`PersistenceError::InvalidInput`] when the value cannot be encoded.
pub fn encode(key: &str, entry: &StoredEntry) -> Result<EntryRow, PersistenceError> {
    let bad = |e: rmp_serde::encode::Error| {
        PersistenceError::InvalidInput(format!("cannot encode the entry of key {key:?}: {e}"))
    };
    let partition = i32::try_from(partition_of(key)).unwrap_or(i32::MAX);
    Ok(match entry {
        StoredEntry::Lww(r) => {
            let (hlc_millis, hlc_counter, hlc_node) = hlc(&r.timestamp);
            EntryRow {
                partition,
                kind: KIND_LWW,
                hlc_millis,
                hlc_counter,
                hlc_node,
                value: rmp_serde::to_vec(r).map_err(bad)?,
            }
        }
        StoredEntry::Or { records } => {
            let newest = records.iter().map(|r| &r.timestamp).max();
            let (hlc_millis, hlc_counter, hlc_node) = newest.map_or((None, None, None), hlc);
            EntryRow {
                partition,
                kind: KIND_OR,
                hlc_millis,
                hlc_counter,
                hlc_node,
                value: rmp_serde::to_vec(records).map_err(bad)?,
            }
        }
    })
}

/// Decodes the `kind` and `value` columns of the row at `location`.
///
/// # Errors
/// [`PersistenceError::Corrupt`] when they do not decode.
pub fn decode(kind: i16, value: &[u8], location: &str) -> Result<StoredEntry, PersistenceError> {
    let corrupt = |e: rmp_serde::decode::Error| PersistenceError::Corrupt {
        location: location.to_string(),
        reason: format!("the value does not decode as msgpack of its kind: {e}"),
    };
    match kind_of(kind, location)? {
        MapKind::Lww => Ok(StoredEntry::Lww(
            rmp_serde::from_slice::<LwwRecord>(value).map_err(corrupt)?,
        )),
        MapKind::Or => Ok(StoredEntry::Or {
            records: rmp_serde::from_slice::<Vec<OrRecord>>(value).map_err(corrupt)?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_storage::persistence::testing::{lww, or_record};

    #[test]
    fn t10_entries_round_trip_with_their_hlc_columns() {
        let e = lww(Some(7), 42, Some(1000));
        let row = encode("k", &e).unwrap();
        assert_eq!(
            (row.kind, row.hlc_millis, row.hlc_counter),
            (KIND_LWW, Some(42), Some(0))
        );
        assert_eq!(row.hlc_node.as_deref(), Some("node-a"));
        assert_eq!(row.partition, partition_of("k") as i32);
        assert_eq!(decode(row.kind, &row.value, "m/k").unwrap(), e);
        let e = StoredEntry::Or {
            records: vec![or_record("a", 5, None), or_record("b", 9, Some(3))],
        };
        let row = encode("k", &e).unwrap();
        assert_eq!((row.kind, row.hlc_millis), (KIND_OR, Some(9)));
        assert_eq!(decode(row.kind, &row.value, "m/k").unwrap(), e);
        let empty = StoredEntry::Or { records: vec![] };
        let row = encode("k", &empty).unwrap();
        assert_eq!(row.hlc_millis, None);
        assert_eq!(decode(row.kind, &row.value, "m/k").unwrap(), empty);
    }

    #[test]
    fn t11_bad_rows_are_corrupt_and_name_the_row() {
        let e = decode(KIND_LWW, b"\xc1", "m/k").unwrap_err();
        assert!(
            matches!(&e, PersistenceError::Corrupt { location, .. } if location == "m/k"),
            "{e}"
        );
        let e = decode(7, b"", "m/k").unwrap_err();
        assert!(e.to_string().contains("kind 7"), "{e}");
    }
}
