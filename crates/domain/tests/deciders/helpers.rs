use std::fmt::Debug;

use chrono::{DateTime, TimeZone, Utc};
use domain::{CustomerId, Decider, Money, OrderId, ProductId, Quantity};

pub struct Given<D: Decider> {
    state: D::State,
}

pub fn given<D: Decider>(events: &[D::Event]) -> Given<D> {
    Given {
        state: D::fold(events),
    }
}

impl<D: Decider> Given<D>
where
    D::Event: Debug + PartialEq,
    D::Error: Debug + PartialEq,
{
    pub fn when(self, command: D::Command) -> Then<D> {
        Then {
            result: D::decide(&self.state, command),
        }
    }
}

pub struct Then<D: Decider> {
    result: Result<Vec<D::Event>, D::Error>,
}

impl<D: Decider> Then<D>
where
    D::Event: Debug + PartialEq,
    D::Error: Debug + PartialEq,
{
    #[track_caller]
    pub fn then(self, expected: Vec<D::Event>) {
        assert_eq!(self.result, Ok(expected));
    }

    #[track_caller]
    pub fn then_nothing(self) {
        assert_eq!(self.result, Ok(vec![]));
    }

    #[track_caller]
    pub fn then_err(self, expected: D::Error) {
        assert_eq!(self.result, Err(expected));
    }
}

pub fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, minute, 0).unwrap()
}

pub fn order_id() -> OrderId {
    OrderId::parse("0f8fad5b-d9cb-469f-a165-70867728950e").unwrap()
}

pub fn product_id() -> ProductId {
    ProductId::parse("7c9e6679-7425-40de-944b-e07fc1f90ae7").unwrap()
}

pub fn alice() -> CustomerId {
    CustomerId::parse("alice").unwrap()
}

pub fn bob() -> CustomerId {
    CustomerId::parse("bob").unwrap()
}

pub fn qty(units: i64) -> Quantity {
    Quantity::parse_stock(units).unwrap()
}

pub fn eur(cents: i64) -> Money {
    Money::cents(cents).unwrap()
}
