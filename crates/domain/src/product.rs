//! A product of the catalogue and its stock. Stream `product-{productId}`.
//!
//! Invariant: stock never goes below zero and never sells more than it has; taking stock for an
//! order happens at most once per order, and giving it back (compensation) at most once, and
//! only what was taken.
//!
//! The product does not remember its orders: what an order holds comes in the command, from
//! the order's reservation (`reservation`), so a stock call costs the same for a product with a
//! million orders behind it as for a new one. Every so often the stream records the product as
//! it stands (`StockCounted`), and loading reads back to that, not to the stream's start.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::reservation::Held;
use crate::status::OrderStatus;
use crate::values::{Money, OrderId, ProductId, ProductName, Quantity, STOCK_MAX};
use crate::{event_contract, Decider};

#[derive(Debug, Clone, PartialEq)]
pub enum ProductCommand {
    Register {
        product_id: ProductId,
        name: ProductName,
        price: Money,
        /// Units in stock from the start (recorded as `StockAdded` in the same append).
        initial_stock: Option<Quantity>,
        at: DateTime<Utc>,
    },
    AddStock {
        quantity: Quantity,
        /// Chosen by the seller's client so a retried delivery of stock is added once.
        change_id: Option<Uuid>,
        at: DateTime<Utc>,
    },
    /// Takes stock for an order (the saga, after the deposit was confirmed).
    DecreaseForOrder {
        order_id: OrderId,
        quantity: Quantity,
        /// What the order holds of this product already, by its reservation.
        held: Held,
        at: DateTime<Utc>,
    },
    /// Gives back what an order took (compensation when a later step failed).
    IncreaseForOrder {
        order_id: OrderId,
        /// What the order holds of this product, by its reservation.
        held: Held,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductRegistered {
    pub product_id: ProductId,
    pub name: ProductName,
    pub price: Money,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockAdded {
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub stock_after: u32,
    /// The seller's id for this change, when given (added in this version; older events have
    /// none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QtyDecreased {
    pub product_id: ProductId,
    pub order_id: OrderId,
    pub order_status: OrderStatus,
    pub quantity: Quantity,
    pub stock_after: u32,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QtyIncreased {
    pub product_id: ProductId,
    pub order_id: OrderId,
    pub order_status: OrderStatus,
    pub quantity: Quantity,
    pub stock_after: u32,
    pub at: DateTime<Utc>,
}

/// The product as it stands (a snapshot): what loading starts from instead of the stream's
/// start. It changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockCounted {
    pub product_id: ProductId,
    pub name: ProductName,
    pub price: Money,
    pub stock: u32,
    /// The seller's latest stock changes, oldest first (at most `RECENT_CHANGES_MAX`).
    pub recent_changes: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProductEvent {
    ProductRegistered(ProductRegistered),
    StockAdded(StockAdded),
    QtyDecreased(QtyDecreased),
    QtyIncreased(QtyIncreased),
    StockCounted(StockCounted),
}

event_contract!(ProductEvent {
    ProductRegistered = crate::contract::PRODUCT_REGISTERED,
    StockAdded = crate::contract::STOCK_ADDED,
    QtyDecreased = crate::contract::QTY_DECREASED,
    QtyIncreased = crate::contract::QTY_INCREASED,
    StockCounted = crate::contract::STOCK_COUNTED,
});

/// The seller's stock changes a product remembers, so a retried change is added once: a change
/// sent again after this many later ones is added again.
pub const RECENT_CHANGES_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub product_id: ProductId,
    pub name: ProductName,
    pub price: Money,
    pub stock: u32,
    /// The seller's latest stock changes, oldest first (at most `RECENT_CHANGES_MAX`).
    pub recent_changes: VecDeque<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum ProductState {
    #[default]
    NotRegistered,
    Registered(Registered),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    #[error("the product does not exist")]
    NotRegistered,
    #[error("the product was already registered with other details")]
    AlreadyRegisteredDifferently,
    #[error("out of stock: {available} left, {wanted} wanted")]
    OutOfStock { available: u32, wanted: u32 },
    #[error("stock would exceed {STOCK_MAX} units")]
    StockFull,
    #[error("this order's stock was given back; it is not taken again")]
    AlreadyGivenBack,
}

pub struct Product;

impl Decider for Product {
    type State = ProductState;
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = ProductError;

    fn decide(
        state: &ProductState,
        command: ProductCommand,
    ) -> Result<Vec<ProductEvent>, ProductError> {
        let registered = match (&command, state) {
            (
                ProductCommand::Register {
                    product_id,
                    name,
                    price,
                    initial_stock,
                    at,
                },
                ProductState::NotRegistered,
            ) => {
                let registered = ProductEvent::ProductRegistered(ProductRegistered {
                    product_id: *product_id,
                    name: name.clone(),
                    price: *price,
                    at: *at,
                });
                let stocked = initial_stock.map(|quantity| {
                    ProductEvent::StockAdded(StockAdded {
                        product_id: *product_id,
                        quantity,
                        stock_after: quantity.units(),
                        change_id: None,
                        at: *at,
                    })
                });
                return Ok(std::iter::once(registered).chain(stocked).collect());
            }
            (_, ProductState::NotRegistered) => return Err(ProductError::NotRegistered),
            (_, ProductState::Registered(r)) => r,
        };
        match command {
            ProductCommand::Register {
                product_id,
                name,
                price,
                ..
            } => {
                if registered.product_id == product_id
                    && registered.name == name
                    && registered.price == price
                {
                    Ok(vec![])
                } else {
                    Err(ProductError::AlreadyRegisteredDifferently)
                }
            }
            ProductCommand::AddStock {
                quantity,
                change_id,
                at,
            } => {
                if change_id.is_some_and(|id| registered.recent_changes.contains(&id)) {
                    return Ok(vec![]);
                }
                let stock_after = registered.stock + quantity.units();
                if stock_after > STOCK_MAX {
                    return Err(ProductError::StockFull);
                }
                Ok(vec![ProductEvent::StockAdded(StockAdded {
                    product_id: registered.product_id,
                    quantity,
                    stock_after,
                    change_id,
                    at,
                })])
            }
            ProductCommand::DecreaseForOrder {
                order_id,
                quantity,
                held,
                at,
            } => {
                match held {
                    Held::Taken(_) => return Ok(vec![]),
                    Held::GivenBack => return Err(ProductError::AlreadyGivenBack),
                    Held::Nothing => {}
                }
                let Some(stock_after) = registered.stock.checked_sub(quantity.units()) else {
                    return Err(ProductError::OutOfStock {
                        available: registered.stock,
                        wanted: quantity.units(),
                    });
                };
                Ok(vec![ProductEvent::QtyDecreased(QtyDecreased {
                    product_id: registered.product_id,
                    order_id,
                    order_status: OrderStatus::Preparing,
                    quantity,
                    stock_after,
                    at,
                })])
            }
            ProductCommand::IncreaseForOrder { order_id, held, at } => {
                let Held::Taken(quantity) = held else {
                    // Nothing was taken (or it was given back already): nothing to give back.
                    return Ok(vec![]);
                };
                Ok(vec![ProductEvent::QtyIncreased(QtyIncreased {
                    product_id: registered.product_id,
                    order_id,
                    order_status: OrderStatus::Cancelled,
                    quantity,
                    stock_after: registered.stock + quantity.units(),
                    at,
                })])
            }
        }
    }

    fn evolve(state: ProductState, event: &ProductEvent) -> ProductState {
        let mut registered = match (state, event) {
            (ProductState::NotRegistered, ProductEvent::ProductRegistered(e)) => {
                return ProductState::Registered(Registered {
                    product_id: e.product_id,
                    name: e.name.clone(),
                    price: e.price,
                    stock: 0,
                    recent_changes: VecDeque::new(),
                });
            }
            (_, ProductEvent::StockCounted(e)) => {
                return ProductState::Registered(Registered {
                    product_id: e.product_id,
                    name: e.name.clone(),
                    price: e.price,
                    stock: e.stock,
                    recent_changes: e.recent_changes.iter().copied().collect(),
                });
            }
            (ProductState::Registered(r), _) => r,
            (state, _) => return state,
        };
        match event {
            ProductEvent::ProductRegistered(_) | ProductEvent::StockCounted(_) => {}
            ProductEvent::StockAdded(e) => {
                registered.stock += e.quantity.units();
                if let Some(change) = e.change_id {
                    if registered.recent_changes.len() == RECENT_CHANGES_MAX {
                        registered.recent_changes.pop_front();
                    }
                    registered.recent_changes.push_back(change);
                }
            }
            ProductEvent::QtyDecreased(e) => {
                registered.stock = registered.stock.saturating_sub(e.quantity.units());
            }
            ProductEvent::QtyIncreased(e) => {
                registered.stock += e.quantity.units();
            }
        }
        ProductState::Registered(registered)
    }

    fn is_snapshot(event: &ProductEvent) -> bool {
        matches!(event, ProductEvent::StockCounted(_))
    }

    fn snapshot(state: &ProductState) -> Option<ProductEvent> {
        let ProductState::Registered(r) = state else {
            return None;
        };
        Some(ProductEvent::StockCounted(StockCounted {
            product_id: r.product_id,
            name: r.name.clone(),
            price: r.price,
            stock: r.stock,
            recent_changes: r.recent_changes.iter().copied().collect(),
        }))
    }
}
