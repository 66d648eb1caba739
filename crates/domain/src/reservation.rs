//! What an order holds of a product's stock. Stream `reservation-{orderId}`.
//!
//! Taking stock for an order touches two streams: the product's, where the stock is counted
//! (appended at its expected revision, so racing orders never oversell), and the order's
//! reservation, so a repeated take or give-back is recognised without reading the product's
//! history. There is no transaction across the two, so the reservation records each move
//! *before* the product's event is appended (`StockMovePlanned`), naming the revision that event
//! will have. A product append at an expected revision lands at the next revision or nowhere,
//! so reading the product's event at the planned revision settles whether the move happened:
//! a crash between the two writes is noticed, never doubled.
//!
//! Invariant: a move is planned only once every earlier plan is known not to have happened or
//! names the same revision (a racing copy of the same call), so the latest plan and the
//! product's event at its revision say everything the order holds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::product::ProductEvent;
use crate::values::{OrderId, ProductId, Quantity};
use crate::{event_contract, Decider};

/// A move of stock for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Movement {
    /// The product's `QtyDecreased` for the order.
    Take,
    /// The product's `QtyIncreased` for the order.
    GiveBack,
}

/// The inventory is about to append `movement` to the product's stream at `productRevision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockMovePlanned {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub movement: Movement,
    pub quantity: Quantity,
    /// The revision the product's event for this move will have.
    pub product_revision: u64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReservationEvent {
    StockMovePlanned(StockMovePlanned),
}

event_contract!(ReservationEvent {
    StockMovePlanned = crate::contract::STOCK_MOVE_PLANNED,
});

/// The latest plan (every earlier one is settled by it: see the module's invariant).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReservationState {
    pub latest: Option<StockMovePlanned>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReservationCommand {
    Plan(StockMovePlanned),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReservationError {
    #[error("this order's stock is held on product {0}, not this one")]
    OtherProduct(ProductId),
}

pub struct Reservation;

impl Decider for Reservation {
    type State = ReservationState;
    type Command = ReservationCommand;
    type Event = ReservationEvent;
    type Error = ReservationError;

    fn decide(
        state: &ReservationState,
        command: ReservationCommand,
    ) -> Result<Vec<ReservationEvent>, ReservationError> {
        let ReservationCommand::Plan(plan) = command;
        match &state.latest {
            Some(latest) if latest.product_id != plan.product_id => {
                Err(ReservationError::OtherProduct(latest.product_id))
            }
            _ => Ok(vec![ReservationEvent::StockMovePlanned(plan)]),
        }
    }

    fn evolve(_state: ReservationState, event: &ReservationEvent) -> ReservationState {
        let ReservationEvent::StockMovePlanned(plan) = event;
        ReservationState {
            latest: Some(plan.clone()),
        }
    }

    /// Every plan holds the whole state: loading reads only the latest.
    fn is_snapshot(_event: &ReservationEvent) -> bool {
        true
    }
}

/// What an order holds of a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    Nothing,
    Taken(Quantity),
    GivenBack,
}

impl ReservationState {
    /// The product revision at which the latest plan's outcome is read.
    pub fn revision_to_check(&self) -> Option<u64> {
        self.latest.as_ref().map(|plan| plan.product_revision)
    }

    /// What the order holds of `product_id`, given the product's event at the latest plan's
    /// revision (`None`: the product has not reached that revision yet, so the move has not
    /// happened so far). An order holds stock of one product only.
    pub fn held(
        &self,
        product_id: ProductId,
        at_planned_revision: Option<&ProductEvent>,
    ) -> Result<Held, ReservationError> {
        let Some(plan) = &self.latest else {
            return Ok(Held::Nothing);
        };
        if plan.product_id != product_id {
            return Err(ReservationError::OtherProduct(plan.product_id));
        }
        let happened = match (plan.movement, at_planned_revision) {
            (Movement::Take, Some(ProductEvent::QtyDecreased(e))) => e.order_id == plan.order_id,
            (Movement::GiveBack, Some(ProductEvent::QtyIncreased(e))) => {
                e.order_id == plan.order_id
            }
            _ => false,
        };
        Ok(match (plan.movement, happened) {
            (Movement::Take, true) => Held::Taken(plan.quantity),
            // Earlier plans did not happen (or named the same revision): nothing is held.
            (Movement::Take, false) => Held::Nothing,
            (Movement::GiveBack, true) => Held::GivenBack,
            // A give-back is planned only for stock that was taken.
            (Movement::GiveBack, false) => Held::Taken(plan.quantity),
        })
    }
}

/// The plan that records `event` (the product's move for an order, about to be appended at
/// `product_revision`); `None` for an event that moves no order's stock.
pub fn plan_for(
    event: &ProductEvent,
    product_revision: u64,
    at: DateTime<Utc>,
) -> Option<StockMovePlanned> {
    let (movement, product_id, order_id, quantity) = match event {
        ProductEvent::QtyDecreased(e) => (Movement::Take, e.product_id, e.order_id, e.quantity),
        ProductEvent::QtyIncreased(e) => (Movement::GiveBack, e.product_id, e.order_id, e.quantity),
        _ => return None,
    };
    Some(StockMovePlanned {
        order_id,
        product_id,
        movement,
        quantity,
        product_revision,
        at,
    })
}

/// For a product stream written before reservations existed (its history, with each event's
/// revision): the plan each order's latest move would have had, so its reservation can be
/// written afterwards and reads the same as if it had been planned.
pub fn plans_of_history<'a>(
    history: impl IntoIterator<Item = (u64, &'a ProductEvent)>,
    at: DateTime<Utc>,
) -> Vec<StockMovePlanned> {
    let mut latest: std::collections::BTreeMap<OrderId, StockMovePlanned> = Default::default();
    for (revision, event) in history {
        if let Some(plan) = plan_for(event, revision, at) {
            latest.insert(plan.order_id, plan);
        }
    }
    latest.into_values().collect()
}
