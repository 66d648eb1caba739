//! The catalogue as a view of product events: every product with its name, price and stock.
//! A pure projection — `evolve(view, event)` — kept current by whichever service needs it (the
//! order service prices orders from it, the inventory lists it).

use std::collections::BTreeMap;

use crate::product::ProductEvent;
use crate::values::{Money, ProductId, ProductName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    pub product_id: ProductId,
    pub name: ProductName,
    pub price: Money,
    pub stock: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalogue {
    products: BTreeMap<ProductId, CatalogueEntry>,
}

impl Catalogue {
    pub fn evolve(mut self, event: &ProductEvent) -> Catalogue {
        self.apply(event);
        self
    }

    /// `evolve` in place, for views kept behind a lock.
    pub fn apply(&mut self, event: &ProductEvent) {
        match event {
            ProductEvent::ProductRegistered(e) => {
                self.products
                    .entry(e.product_id)
                    .or_insert_with(|| CatalogueEntry {
                        product_id: e.product_id,
                        name: e.name.clone(),
                        price: e.price,
                        stock: 0,
                    });
            }
            // Each stock event carries the stock after it: the view takes that, so it cannot
            // drift from the aggregate.
            ProductEvent::StockAdded(e) => self.set_stock(e.product_id, e.stock_after),
            ProductEvent::QtyDecreased(e) => self.set_stock(e.product_id, e.stock_after),
            ProductEvent::QtyIncreased(e) => self.set_stock(e.product_id, e.stock_after),
            ProductEvent::StockCounted(e) => self.set_stock(e.product_id, e.stock),
        }
    }

    fn set_stock(&mut self, product_id: ProductId, stock: u32) {
        if let Some(entry) = self.products.get_mut(&product_id) {
            entry.stock = stock;
        }
    }

    pub fn get(&self, product_id: ProductId) -> Option<&CatalogueEntry> {
        self.products.get(&product_id)
    }

    pub fn products(&self) -> impl Iterator<Item = &CatalogueEntry> {
        self.products.values()
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }
}
