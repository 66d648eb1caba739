//! How several saga instances share the orders: every order belongs to one of `PARTITIONS`
//! partitions (fixed: its id decides it, on every instance and version), and each partition is
//! worked by the one instance the lease table (`saga-leases`) names.
//!
//! The table is one stream every instance appends to at its expected revision, so the store
//! itself settles who holds what: each `LeasesAssigned` is the whole table (every instance,
//! its heartbeat count and its partitions), written by an instance renewing its own entry
//! every `RENEW_MS`. An instance whose count has not moved for `LEASE_MS`, as another instance
//! sees it on its own clock, is gone: its entry is dropped and its partitions taken. An instance
//! that could not renew for `FENCE_MS` (shorter) stops working its partitions first, so two
//! instances do not work one order at once. A partition is handed over by its holder only once
//! its work is stopped and its bookkeeping (`saga-checkpoint-{partition}`) stored.
//!
//! `plan` is the pure rule: each instance's fair share (sorted by id, the first ones take one
//! more), taking free partitions up to it, giving what is above it to whoever is below.

use std::collections::{BTreeMap, BTreeSet};

use domain::{Decider, OrderId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Partitions of the orders. Fixed: changing it would move orders between partitions whose
/// bookkeeping was stored under the old count.
pub const PARTITIONS: usize = 16;
/// The lease table's stream.
pub const LEASE_STREAM: &str = "saga-leases";
/// Tables the store keeps (`$maxCount`); each is whole, so the latest one is all that counts.
pub const LEASES_KEPT: u64 = 100;
/// How often an instance renews its entry, in milliseconds.
pub const RENEW_MS: u64 = 1_000;
/// An instance whose heartbeat has not moved for this long (seen by another) is gone, in ms.
pub const LEASE_MS: u64 = 5_000;
/// An instance that has not renewed for this long stops working its partitions, in ms.
pub const FENCE_MS: u64 = 3_000;

/// The partition an order belongs to: from the random half of its id (stable across builds,
/// unlike a hasher's).
pub fn partition_of(order_id: OrderId) -> usize {
    let bytes = order_id.as_uuid().into_bytes();
    let random = u64::from_be_bytes(bytes[8..16].try_into().unwrap_or([0; 8]));
    (random % PARTITIONS as u64) as usize
}

/// The bookkeeping stream of a partition.
pub fn checkpoint_stream(partition: usize) -> String {
    format!("{}-{partition}", crate::checkpoint::CHECKPOINT_STREAM)
}

/// One instance in the table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// How many times it renewed: moves while it lives.
    pub beat: u64,
    pub partitions: BTreeSet<usize>,
}

/// Who holds which partitions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub holders: BTreeMap<Uuid, Holder>,
}

impl Table {
    pub fn partitions_of(&self, instance: Uuid) -> BTreeSet<usize> {
        self.holders
            .get(&instance)
            .map(|h| h.partitions.clone())
            .unwrap_or_default()
    }

    /// Each holder's fair share: `PARTITIONS / n`, one more for the first `PARTITIONS % n`.
    fn shares(&self) -> BTreeMap<Uuid, usize> {
        let n = self.holders.len().max(1);
        self.holders
            .keys()
            .enumerate()
            .map(|(i, id)| (*id, PARTITIONS / n + usize::from(i < PARTITIONS % n)))
            .collect()
    }
}

/// One holder as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HolderStored {
    pub instance: Uuid,
    pub beat: u64,
    pub partitions: Vec<usize>,
}

/// The whole table, as one instance wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeasesAssigned {
    pub partitions: usize,
    pub holders: Vec<HolderStored>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LeaseEvent {
    LeasesAssigned(LeasesAssigned),
}

/// The lease table's event type, as stored.
pub const LEASES_ASSIGNED: &str = "LeasesAssigned";

impl domain::Event for LeaseEvent {
    const TYPES: &'static [&'static str] = &[LEASES_ASSIGNED];

    fn event_type(&self) -> &'static str {
        LEASES_ASSIGNED
    }

    fn to_json(&self) -> serde_json::Value {
        let LeaseEvent::LeasesAssigned(e) = self;
        serde_json::to_value(e).unwrap_or(serde_json::Value::Null)
    }

    fn from_json(event_type: &str, data: serde_json::Value) -> Result<Self, domain::EventError> {
        match event_type {
            LEASES_ASSIGNED => Ok(LeaseEvent::LeasesAssigned(serde_json::from_value(data)?)),
            other => Err(domain::EventError::UnknownType(other.to_string())),
        }
    }
}

/// Write this table.
pub struct Assign(pub Table);

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {}

pub struct Leases;

impl Decider for Leases {
    type State = Table;
    type Command = Assign;
    type Event = LeaseEvent;
    type Error = LeaseError;

    fn decide(_table: &Table, Assign(table): Assign) -> Result<Vec<LeaseEvent>, LeaseError> {
        let holders = table
            .holders
            .iter()
            .map(|(instance, h)| HolderStored {
                instance: *instance,
                beat: h.beat,
                partitions: h.partitions.iter().copied().collect(),
            })
            .collect();
        Ok(vec![LeaseEvent::LeasesAssigned(LeasesAssigned {
            partitions: PARTITIONS,
            holders,
        })])
    }

    fn evolve(_table: Table, event: &LeaseEvent) -> Table {
        let LeaseEvent::LeasesAssigned(assigned) = event;
        Table {
            holders: assigned
                .holders
                .iter()
                .map(|h| {
                    let partitions = h.partitions.iter().copied().filter(|p| *p < PARTITIONS);
                    let holder = Holder {
                        beat: h.beat,
                        partitions: partitions.collect(),
                    };
                    (h.instance, holder)
                })
                .collect(),
        }
    }

    /// Every table is whole.
    fn is_snapshot(_event: &LeaseEvent) -> bool {
        true
    }
}

/// The table `me` writes next: the `gone` instances dropped, `me` renewed (or dropped when
/// `leaving`), free partitions taken up to its share, and what it holds above its share given
/// to the holders below theirs. Nobody else's partitions are ever taken while they live.
pub fn plan(table: &Table, me: Uuid, gone: &BTreeSet<Uuid>, leaving: bool) -> Table {
    let mut next = table.clone();
    next.holders.retain(|id, _| *id == me || !gone.contains(id));
    if leaving {
        next.holders.remove(&me);
        return next;
    }
    next.holders.entry(me).or_default().beat += 1;
    let shares = next.shares();
    let share = shares[&me];
    let held: BTreeSet<usize> = next
        .holders
        .values()
        .flat_map(|h| h.partitions.iter().copied())
        .collect();
    let mut free = (0..PARTITIONS).filter(|p| !held.contains(p));
    let mine = &mut next.holders.get_mut(&me).expect("renewed above").partitions;
    while mine.len() < share {
        let Some(p) = free.next() else { break };
        mine.insert(p);
    }
    let mut excess: Vec<usize> = mine
        .iter()
        .rev()
        .take(mine.len().saturating_sub(share))
        .copied()
        .collect();
    for (id, wanted) in &shares {
        let holder = next.holders.get_mut(id).expect("a share per holder");
        while holder.partitions.len() < *wanted && *id != me {
            let Some(p) = excess.pop() else { break };
            holder.partitions.insert(p);
        }
    }
    let given: BTreeSet<usize> = next
        .holders
        .iter()
        .filter(|(id, _)| **id != me)
        .flat_map(|(_, h)| h.partitions.iter().copied())
        .collect();
    if let Some(mine) = next.holders.get_mut(&me) {
        mine.partitions.retain(|p| !given.contains(p));
    }
    next
}

/// What an instance has seen of the others' heartbeats, on its own clock.
#[derive(Debug, Default)]
pub struct Heartbeats {
    seen: BTreeMap<Uuid, (u64, std::time::Instant)>,
}

impl Heartbeats {
    /// Notes the table's heartbeats; the instances (other than `me`) whose heartbeat has not
    /// moved for `LEASE_MS`.
    pub fn gone(&mut self, table: &Table, me: Uuid, now: std::time::Instant) -> BTreeSet<Uuid> {
        self.seen.retain(|id, _| table.holders.contains_key(id));
        let lease = std::time::Duration::from_millis(LEASE_MS);
        let mut gone = BTreeSet::new();
        for (id, holder) in &table.holders {
            if *id == me {
                continue;
            }
            let seen = self.seen.entry(*id).or_insert((holder.beat, now));
            if seen.0 != holder.beat {
                *seen = (holder.beat, now);
            } else if now.duration_since(seen.1) >= lease {
                gone.insert(*id);
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn counts(table: &Table) -> Vec<usize> {
        table.holders.values().map(|h| h.partitions.len()).collect()
    }

    #[test]
    fn a_lone_instance_takes_every_partition() {
        // Given an empty table, when the first instance renews, then it holds all.
        let table = plan(&Table::default(), instance(1), &BTreeSet::new(), false);
        assert_eq!(table.partitions_of(instance(1)).len(), PARTITIONS);
        assert_eq!(table.holders[&instance(1)].beat, 1);
    }

    #[test]
    fn a_newcomer_gets_half_given_by_the_holder_never_taken() {
        let (a, b) = (instance(1), instance(2));
        let table = plan(&Table::default(), a, &BTreeSet::new(), false);
        // When b joins, it takes nothing: every partition is held.
        let table = plan(&table, b, &BTreeSet::new(), false);
        assert_eq!(counts(&table), [PARTITIONS, 0]);
        // When a renews, it gives b its share.
        let table = plan(&table, a, &BTreeSet::new(), false);
        assert_eq!(counts(&table), [PARTITIONS / 2, PARTITIONS / 2]);
        let (mine, theirs) = (table.partitions_of(a), table.partitions_of(b));
        assert!(mine.is_disjoint(&theirs));
        assert_eq!(mine.len() + theirs.len(), PARTITIONS);
        // And renewing again changes nobody's partitions.
        let again = plan(
            &plan(&table, b, &BTreeSet::new(), false),
            a,
            &BTreeSet::new(),
            false,
        );
        assert_eq!(again.partitions_of(a), mine);
        assert_eq!(again.partitions_of(b), theirs);
    }

    #[test]
    fn a_gone_instance_is_dropped_and_its_partitions_taken() {
        let (a, b, c) = (instance(1), instance(2), instance(3));
        let mut table = plan(&Table::default(), a, &BTreeSet::new(), false);
        for me in [b, c, a, b, c, a] {
            table = plan(&table, me, &BTreeSet::new(), false);
        }
        assert_eq!(counts(&table), [6, 5, 5]);
        // When b sees a gone, then b and c share all.
        let table = plan(&table, b, &[a].into(), false);
        let table = plan(&table, c, &BTreeSet::new(), false);
        assert!(!table.holders.contains_key(&a));
        assert_eq!(counts(&table), [8, 8]);
    }

    #[test]
    fn a_leaving_instance_frees_its_partitions_for_the_others() {
        let (a, b) = (instance(1), instance(2));
        let table = plan(&Table::default(), a, &BTreeSet::new(), false);
        let table = plan(
            &plan(&table, b, &BTreeSet::new(), false),
            a,
            &BTreeSet::new(),
            false,
        );
        let table = plan(&table, a, &BTreeSet::new(), true);
        assert_eq!(table.holders.len(), 1);
        let table = plan(&table, b, &BTreeSet::new(), false);
        assert_eq!(table.partitions_of(b).len(), PARTITIONS);
    }

    #[test]
    fn a_stored_table_reads_back_the_same() {
        let table = plan(&Table::default(), instance(1), &BTreeSet::new(), false);
        let events = Leases::decide(&Table::default(), Assign(table.clone())).unwrap();
        assert_eq!(Leases::fold(&events), table);
    }

    #[test]
    fn heartbeats_that_stop_moving_for_the_lease_mark_an_instance_gone() {
        let (a, b) = (instance(1), instance(2));
        let table = plan(
            &plan(&Table::default(), a, &BTreeSet::new(), false),
            b,
            &BTreeSet::new(),
            false,
        );
        let mut seen = Heartbeats::default();
        let start = std::time::Instant::now();
        assert!(seen.gone(&table, a, start).is_empty());
        let later = start + std::time::Duration::from_millis(LEASE_MS);
        assert_eq!(seen.gone(&table, a, later), [b].into());
        // A heartbeat that moved is alive again.
        let table = plan(&table, b, &BTreeSet::new(), false);
        assert!(seen.gone(&table, a, later).is_empty());
    }

    #[test]
    fn orders_spread_over_every_partition() {
        let mut seen = BTreeSet::new();
        for _ in 0..2_000 {
            seen.insert(partition_of(OrderId::new()));
        }
        assert_eq!(seen.len(), PARTITIONS);
    }
}
