//! A product of the catalogue and its stock. Stream `product-{productId}`.
//!
//! Invariant: stock never goes below zero and never sells more than it has; taking stock for an
//! order happens at most once per order, and giving it back (compensation) at most once, and
//! only what was taken.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
        at: DateTime<Utc>,
    },
    /// Gives back what an order took (compensation when a later step failed).
    IncreaseForOrder {
        order_id: OrderId,
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

#[derive(Debug, Clone, PartialEq)]
pub enum ProductEvent {
    ProductRegistered(ProductRegistered),
    StockAdded(StockAdded),
    QtyDecreased(QtyDecreased),
    QtyIncreased(QtyIncreased),
}

event_contract!(ProductEvent {
    ProductRegistered = crate::contract::PRODUCT_REGISTERED,
    StockAdded = crate::contract::STOCK_ADDED,
    QtyDecreased = crate::contract::QTY_DECREASED,
    QtyIncreased = crate::contract::QTY_INCREASED,
});

#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub product_id: ProductId,
    pub name: ProductName,
    pub price: Money,
    pub stock: u32,
    /// What each order took.
    pub taken: HashMap<OrderId, Quantity>,
    /// Orders whose stock was given back.
    pub given_back: HashSet<OrderId>,
    /// The seller's stock changes already applied.
    pub changes: HashSet<Uuid>,
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
                if change_id.is_some_and(|id| registered.changes.contains(&id)) {
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
                at,
            } => {
                if registered.taken.contains_key(&order_id) {
                    return Ok(vec![]);
                }
                if registered.given_back.contains(&order_id) {
                    return Err(ProductError::AlreadyGivenBack);
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
            ProductCommand::IncreaseForOrder { order_id, at } => {
                let Some(quantity) = registered.taken.get(&order_id).copied() else {
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
                    taken: HashMap::new(),
                    given_back: HashSet::new(),
                    changes: HashSet::new(),
                });
            }
            (ProductState::Registered(r), _) => r,
            (state, _) => return state,
        };
        match event {
            ProductEvent::ProductRegistered(_) => {}
            ProductEvent::StockAdded(e) => {
                registered.stock += e.quantity.units();
                registered.changes.extend(e.change_id);
            }
            ProductEvent::QtyDecreased(e) => {
                registered.stock = registered.stock.saturating_sub(e.quantity.units());
                registered.taken.insert(e.order_id, e.quantity);
            }
            ProductEvent::QtyIncreased(e) => {
                registered.stock += e.quantity.units();
                registered.taken.remove(&e.order_id);
                registered.given_back.insert(e.order_id);
            }
        }
        ProductState::Registered(registered)
    }
}
