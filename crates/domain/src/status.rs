//! The order's status as the customer sees it, carried by every order-related event.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    OrderPlaced,
    AwaitingDeposit,
    DepositConfirmed,
    Preparing,
    Shipping,
    Closed,
    Cancelled,
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CancelReason {
    CustomerRequest,
    OutOfStock,
    DepositOverdue,
    /// The parcel could not be sent after the stock was taken: the stock goes back and the
    /// money is refunded.
    DeliveryFailed,
}
