//! Schemas of the domain's enums as they travel (the domain itself stays free of schema
//! derives); a test holds each to the domain's serialization.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The order's status as the customer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = OrderStatus)]
pub enum OrderStatusName {
    OrderPlaced,
    AwaitingDeposit,
    DepositConfirmed,
    Preparing,
    Shipping,
    Closed,
    Cancelled,
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = CancelReason)]
pub enum CancelReasonName {
    CustomerRequest,
    OutOfStock,
    DepositOverdue,
    DeliveryFailed,
}

impl From<domain::OrderStatus> for OrderStatusName {
    fn from(status: domain::OrderStatus) -> OrderStatusName {
        use domain::OrderStatus as S;
        match status {
            S::OrderPlaced => OrderStatusName::OrderPlaced,
            S::AwaitingDeposit => OrderStatusName::AwaitingDeposit,
            S::DepositConfirmed => OrderStatusName::DepositConfirmed,
            S::Preparing => OrderStatusName::Preparing,
            S::Shipping => OrderStatusName::Shipping,
            S::Closed => OrderStatusName::Closed,
            S::Cancelled => OrderStatusName::Cancelled,
        }
    }
}

impl From<domain::CancelReason> for CancelReasonName {
    fn from(reason: domain::CancelReason) -> CancelReasonName {
        use domain::CancelReason as R;
        match reason {
            R::CustomerRequest => CancelReasonName::CustomerRequest,
            R::OutOfStock => CancelReasonName::OutOfStock,
            R::DepositOverdue => CancelReasonName::DepositOverdue,
            R::DeliveryFailed => CancelReasonName::DeliveryFailed,
        }
    }
}

impl From<CancelReasonName> for domain::CancelReason {
    fn from(reason: CancelReasonName) -> domain::CancelReason {
        use domain::CancelReason as R;
        match reason {
            CancelReasonName::CustomerRequest => R::CustomerRequest,
            CancelReasonName::OutOfStock => R::OutOfStock,
            CancelReasonName::DepositOverdue => R::DepositOverdue,
            CancelReasonName::DeliveryFailed => R::DeliveryFailed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{CancelReason, OrderStatus};

    #[test]
    fn the_schemas_serialize_as_the_domains_values() {
        use OrderStatus as S;
        for status in [
            S::OrderPlaced,
            S::AwaitingDeposit,
            S::DepositConfirmed,
            S::Preparing,
            S::Shipping,
            S::Closed,
            S::Cancelled,
        ] {
            let name = OrderStatusName::from(status);
            assert_eq!(
                serde_json::to_value(name).unwrap(),
                serde_json::to_value(status).unwrap()
            );
        }
        use CancelReason as R;
        for reason in [
            R::CustomerRequest,
            R::OutOfStock,
            R::DepositOverdue,
            R::DeliveryFailed,
        ] {
            let name = CancelReasonName::from(reason);
            assert_eq!(
                serde_json::to_value(name).unwrap(),
                serde_json::to_value(reason).unwrap()
            );
            assert_eq!(CancelReason::from(name), reason);
        }
    }
}
