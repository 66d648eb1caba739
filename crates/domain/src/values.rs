//! Value types that can only hold valid values: they are built by `parse`/`new`, never by hand.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most units of one product in one order.
pub const ORDER_QUANTITY_MAX: u32 = 100;
/// Most units of one product in stock.
pub const STOCK_MAX: u32 = 1_000_000;
/// Largest price or amount, in cents (one million euros).
pub const AMOUNT_CENTS_MAX: i64 = 100_000_000;
/// Longest product name, in characters.
pub const PRODUCT_NAME_CHARS_MAX: usize = 100;
/// Longest customer id, in characters.
pub const CUSTOMER_ID_CHARS_MAX: usize = 64;

/// Why a value is refused. The messages do not name the value: the edge that parsed it
/// says which field it was ("price must be between …").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("must be between {min} and {max}, got {got}")]
    OutOfRange { got: i64, min: i64, max: i64 },
    #[error("must not be empty or only spaces")]
    Blank,
    #[error("must have at most {max} characters, got {got}")]
    TooLong { got: usize, max: usize },
    #[error("must not hold control characters (such as NUL, a tab or a line break)")]
    ControlCharacter,
    #[error("must have 1 to {CUSTOMER_ID_CHARS_MAX} letters, digits, '-' or '_'")]
    CustomerId,
    #[error("must be a UUID, got '{0}'")]
    Id(String),
}

macro_rules! uuid_id {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            pub fn parse(text: &str) -> Result<Self, ValueError> {
                Uuid::parse_str(text)
                    .map(Self)
                    .map_err(|_| ValueError::Id(text.to_string()))
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    OrderId,
    "An order, and the process that carries it (its correlation id)."
);
uuid_id!(ProductId, "A product of the catalogue.");

/// Who placed an order: the customer's account name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CustomerId(String);

impl CustomerId {
    pub fn parse(text: &str) -> Result<CustomerId, ValueError> {
        let valid = !text.is_empty()
            && text.chars().count() <= CUSTOMER_ID_CHARS_MAX
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        valid
            .then(|| CustomerId(text.to_string()))
            .ok_or(ValueError::CustomerId)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CustomerId {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        CustomerId::parse(&text)
    }
}

impl From<CustomerId> for String {
    fn from(id: CustomerId) -> String {
        id.0
    }
}

/// Units of a product in an order: 1 to `ORDER_QUANTITY_MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Quantity(u32);

impl Quantity {
    pub fn parse(units: i64) -> Result<Quantity, ValueError> {
        Self::within(units, ORDER_QUANTITY_MAX)
    }

    /// Units of stock added at once: 1 to `STOCK_MAX`.
    pub fn parse_stock(units: i64) -> Result<Quantity, ValueError> {
        Self::within(units, STOCK_MAX)
    }

    /// A product's stock when it is registered: 0 (none yet) to `STOCK_MAX`.
    pub fn parse_initial_stock(units: i64) -> Result<Option<Quantity>, ValueError> {
        if units == 0 {
            return Ok(None);
        }
        Self::parse_stock(units)
            .map(Some)
            .map_err(|_| ValueError::OutOfRange {
                got: units,
                min: 0,
                max: i64::from(STOCK_MAX),
            })
    }

    fn within(units: i64, max: u32) -> Result<Quantity, ValueError> {
        if units >= 1 && units <= i64::from(max) {
            Ok(Quantity(units as u32))
        } else {
            Err(ValueError::OutOfRange {
                got: units,
                min: 1,
                max: i64::from(max),
            })
        }
    }

    pub fn units(&self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = ValueError;
    fn try_from(units: i64) -> Result<Self, ValueError> {
        // Stored events were validated when written; reading them back uses the wider bound.
        Quantity::parse_stock(units)
    }
}

impl From<Quantity> for u32 {
    fn from(q: Quantity) -> u32 {
        q.0
    }
}

/// An amount of euros, in cents: 0 to `AMOUNT_CENTS_MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Money(i64);

impl Money {
    pub fn cents(cents: i64) -> Result<Money, ValueError> {
        if (0..=AMOUNT_CENTS_MAX).contains(&cents) {
            Ok(Money(cents))
        } else {
            Err(ValueError::OutOfRange {
                got: cents,
                min: 0,
                max: AMOUNT_CENTS_MAX,
            })
        }
    }

    pub fn as_cents(&self) -> i64 {
        self.0
    }

    /// Price × quantity; cannot overflow within the bounds of both.
    pub fn times(&self, quantity: Quantity) -> Result<Money, ValueError> {
        Money::cents(self.0 * i64::from(quantity.units()))
    }
}

impl TryFrom<i64> for Money {
    type Error = ValueError;
    fn try_from(cents: i64) -> Result<Self, ValueError> {
        Money::cents(cents)
    }
}

impl From<Money> for i64 {
    fn from(m: Money) -> i64 {
        m.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02} EUR", self.0 / 100, self.0 % 100)
    }
}

/// A product's display name: 1 to `PRODUCT_NAME_CHARS_MAX` characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProductName(String);

impl ProductName {
    pub fn parse(text: &str) -> Result<ProductName, ValueError> {
        let trimmed = text.trim();
        let chars = trimmed.chars().count();
        if trimmed.chars().any(char::is_control) {
            return Err(ValueError::ControlCharacter);
        }
        if chars == 0 {
            return Err(ValueError::Blank);
        }
        if chars > PRODUCT_NAME_CHARS_MAX {
            return Err(ValueError::TooLong {
                got: chars,
                max: PRODUCT_NAME_CHARS_MAX,
            });
        }
        Ok(ProductName(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProductName {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        ProductName::parse(&text)
    }
}

impl From<ProductName> for String {
    fn from(name: ProductName) -> String {
        name.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_outside_the_limits_do_not_parse() {
        assert!(Quantity::parse(0).is_err());
        assert!(Quantity::parse(-3).is_err());
        assert!(Quantity::parse(i64::from(ORDER_QUANTITY_MAX) + 1).is_err());
        assert_eq!(Quantity::parse(2).unwrap().units(), 2);
        assert!(Quantity::parse_stock(i64::from(STOCK_MAX)).is_ok());
    }

    #[test]
    fn money_is_bounded_and_multiplies_by_quantity() {
        assert!(Money::cents(-1).is_err());
        assert!(Money::cents(AMOUNT_CENTS_MAX + 1).is_err());
        let price = Money::cents(1999).unwrap();
        assert_eq!(
            price.times(Quantity::parse(3).unwrap()).unwrap().as_cents(),
            5997
        );
        assert_eq!(price.to_string(), "19.99 EUR");
    }

    #[test]
    fn initial_stock_may_be_none_but_not_negative() {
        assert_eq!(Quantity::parse_initial_stock(0), Ok(None));
        assert_eq!(
            Quantity::parse_initial_stock(-1).unwrap_err().to_string(),
            "must be between 0 and 1000000, got -1"
        );
        assert_eq!(
            Quantity::parse_initial_stock(i64::from(STOCK_MAX) + 1).unwrap_err(),
            ValueError::OutOfRange {
                got: i64::from(STOCK_MAX) + 1,
                min: 0,
                max: i64::from(STOCK_MAX)
            }
        );
        assert_eq!(
            Quantity::parse_initial_stock(5).unwrap().unwrap().units(),
            5
        );
    }

    #[test]
    fn names_and_customer_ids_are_checked() {
        assert_eq!(ProductName::parse("   "), Err(ValueError::Blank));
        assert_eq!(
            ProductName::parse("tea\0"),
            Err(ValueError::ControlCharacter)
        );
        assert_eq!(
            ProductName::parse(&"x".repeat(PRODUCT_NAME_CHARS_MAX + 1)),
            Err(ValueError::TooLong {
                got: PRODUCT_NAME_CHARS_MAX + 1,
                max: PRODUCT_NAME_CHARS_MAX
            })
        );
        assert_eq!(ProductName::parse("  Tea  ").unwrap().as_str(), "Tea");
        assert!(CustomerId::parse("alice").is_ok());
        assert!(CustomerId::parse("al ice").is_err());
        assert!(CustomerId::parse("").is_err());
        assert!(OrderId::parse("nope").is_err());
    }

    #[test]
    fn values_refuse_invalid_json() {
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert!(serde_json::from_str::<Money>("-5").is_err());
        assert!(serde_json::from_str::<CustomerId>("\"a b\"").is_err());
        assert_eq!(serde_json::from_str::<Quantity>("7").unwrap().units(), 7);
    }
}
