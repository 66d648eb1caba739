//! Whatever sequence of commands the product receives, stock never goes below zero, never sells
//! more than it has, and stock = added − taken + given back; and its stock count holds it whole.

use domain::product::{Product, ProductCommand, ProductEvent, ProductState};
use domain::reservation::{Held, ReservationState};
use domain::{Decider, OrderId, ProductName};
use proptest::prelude::*;

use crate::helpers::*;

#[derive(Debug, Clone)]
enum Op {
    Add(i64),
    Take { order: usize, units: i64 },
    GiveBack { order: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..20).prop_map(Op::Add),
        (0usize..12, 1i64..10).prop_map(|(order, units)| Op::Take { order, units }),
        (0usize..12).prop_map(|order| Op::GiveBack { order }),
    ]
}

proptest! {
    #[test]
    fn stock_is_never_negative_nor_oversold(ops in prop::collection::vec(op(), 1..80)) {
        let orders: Vec<OrderId> = (0..12).map(|_| OrderId::new()).collect();
        let register = ProductCommand::Register { product_id: product_id(), name: ProductName::parse("Tea").unwrap(), price: eur(100), initial_stock: None, at: at(0) };
        let mut history: Vec<ProductEvent> = Product::decide(&ProductState::default(), register).unwrap();
        let (mut added, mut taken, mut returned) = (0i64, 0i64, 0i64);
        for op in ops {
            let state = Product::fold(&history);
            let command = match op {
                Op::Add(units) => ProductCommand::AddStock { quantity: qty(units), change_id: None, at: at(1) },
                Op::Take { order, units } => ProductCommand::DecreaseForOrder { order_id: orders[order], quantity: qty(units), held: held(&history, orders[order]), at: at(2) },
                Op::GiveBack { order } => ProductCommand::IncreaseForOrder { order_id: orders[order], held: held(&history, orders[order]), at: at(3) },
            };
            let Ok(events) = Product::decide(&state, command) else { continue };
            for event in &events {
                match event {
                    ProductEvent::StockAdded(e) => added += i64::from(e.quantity.units()),
                    ProductEvent::QtyDecreased(e) => taken += i64::from(e.quantity.units()),
                    ProductEvent::QtyIncreased(e) => returned += i64::from(e.quantity.units()),
                    ProductEvent::ProductRegistered(_) | ProductEvent::StockCounted(_) => {}
                }
            }
            history.extend(events);
            let ProductState::Registered(now) = Product::fold(&history) else { panic!("registered") };
            prop_assert!(taken - returned <= added, "sold more than ever came in");
            prop_assert_eq!(i64::from(now.stock), added - taken + returned);
            let count = Product::snapshot(&ProductState::Registered(now.clone())).unwrap();
            prop_assert_eq!(Product::fold([&count]), ProductState::Registered(now));
        }
        // Each order took stock at most once and gave back at most what it took.
        for order in &orders {
            let takes = history.iter().filter(|e| matches!(e, ProductEvent::QtyDecreased(d) if d.order_id == *order)).count();
            let returns = history.iter().filter(|e| matches!(e, ProductEvent::QtyIncreased(d) if d.order_id == *order)).count();
            prop_assert!(takes <= 1 && returns <= takes);
        }
    }
}

/// What the order's reservation would say: its latest plan is the latest move in the history
/// (each one happened), read at the revision it landed at.
fn held(history: &[ProductEvent], order: OrderId) -> Held {
    let numbered = history.iter().enumerate().map(|(n, e)| (n as u64, e));
    let latest = domain::reservation::plans_of_history(numbered, at(0))
        .into_iter()
        .find(|plan| plan.order_id == order);
    let at_revision = latest
        .as_ref()
        .map(|plan| &history[plan.product_revision as usize]);
    ReservationState { latest }
        .held(product_id(), at_revision)
        .unwrap()
}
