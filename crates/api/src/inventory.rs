//! The inventory service's contract: the catalogue and the stock.

use domain::ProductId;
use serde::{Deserialize, Serialize};
use servicekit::{Actor, CallError, Cause, Upstream};
use utoipa::ToSchema;

use crate::{post, Answered, Written};

/// `POST /products`: the seller registers a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterProduct {
    /// Chosen by the caller to make a retried registration safe; new if absent.
    #[schema(format = Uuid)]
    pub product_id: Option<String>,
    /// 1 to 100 characters, no control characters; trimmed.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Cents, 0 to 100,000,000.
    #[schema(minimum = 0, maximum = 100_000_000)]
    pub price: i64,
    /// Initial stock, 0 (none) to 1,000,000.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub stock: i64,
}

/// `POST /products/{id}/stock`: the seller adds stock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddStock {
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: i64,
    /// Makes a retried change safe: a change id already applied adds nothing.
    #[schema(format = Uuid)]
    pub change_id: Option<String>,
}

/// `POST /products/{id}/decrease` (with `quantity`) and `/increase` (without): stock taken for
/// an order, or given back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StockForOrder {
    #[schema(format = Uuid)]
    pub order_id: String,
    /// Only for a decrease: units, 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    #[schema(value_type = String, format = Uuid)]
    pub product_id: ProductId,
    pub name: String,
    /// Cents.
    pub price: i64,
    pub stock: u32,
}

/// The stock after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockView {
    #[schema(value_type = String, format = Uuid)]
    pub product_id: ProductId,
    pub stock: u32,
    /// The product stream's revision after the change.
    pub revision: Option<u64>,
}

/// A call to the inventory service.
#[derive(Clone)]
pub struct InventoryClient(pub Upstream);

impl InventoryClient {
    pub async fn decrease(
        &self,
        product_id: ProductId,
        request: &StockForOrder,
        actor: &Actor,
        cause: Cause,
    ) -> Result<Answered<Written<StockView>>, CallError> {
        let path = format!("/products/{product_id}/decrease");
        post(&self.0, &path, request, actor, cause).await
    }

    pub async fn increase(
        &self,
        product_id: ProductId,
        request: &StockForOrder,
        actor: &Actor,
        cause: Cause,
    ) -> Result<Answered<Written<StockView>>, CallError> {
        let path = format!("/products/{product_id}/increase");
        post(&self.0, &path, request, actor, cause).await
    }
}
