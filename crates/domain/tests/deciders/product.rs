use domain::product::*;
use domain::reservation::Held;
use domain::Decider;
use domain::{OrderId, OrderStatus, ProductName};

use crate::helpers::*;

fn registered() -> ProductEvent {
    ProductEvent::ProductRegistered(ProductRegistered {
        product_id: product_id(),
        name: ProductName::parse("Green tea").unwrap(),
        price: eur(1250),
        at: at(0),
    })
}

fn stock_added(units: i64, after: u32) -> ProductEvent {
    ProductEvent::StockAdded(StockAdded {
        product_id: product_id(),
        quantity: qty(units),
        stock_after: after,
        change_id: None,
        at: at(1),
    })
}

fn decreased(order: OrderId, units: i64, after: u32) -> ProductEvent {
    ProductEvent::QtyDecreased(QtyDecreased {
        product_id: product_id(),
        order_id: order,
        order_status: OrderStatus::Preparing,
        quantity: qty(units),
        stock_after: after,
        at: at(2),
    })
}

fn decrease(order: OrderId, units: i64, held: Held) -> ProductCommand {
    ProductCommand::DecreaseForOrder {
        order_id: order,
        quantity: qty(units),
        held,
        at: at(2),
    }
}

#[test]
fn a_product_is_registered_then_stocked() {
    let register = ProductCommand::Register {
        product_id: product_id(),
        name: ProductName::parse("Green tea").unwrap(),
        price: eur(1250),
        initial_stock: None,
        at: at(0),
    };
    given::<Product>(&[])
        .when(register.clone())
        .then(vec![registered()]);
    given::<Product>(&[registered()])
        .when(register)
        .then_nothing();
    given::<Product>(&[registered()])
        .when(ProductCommand::AddStock {
            quantity: qty(5),
            change_id: None,
            at: at(1),
        })
        .then(vec![stock_added(5, 5)]);
}

#[test]
fn stock_is_taken_for_an_order_once() {
    given::<Product>(&[registered(), stock_added(5, 5)])
        .when(decrease(order_id(), 2, Held::Nothing))
        .then(vec![decreased(order_id(), 2, 3)]);
    // The order's reservation says it holds the stock already.
    given::<Product>(&[registered(), stock_added(5, 5), decreased(order_id(), 2, 3)])
        .when(decrease(order_id(), 2, Held::Taken(qty(2))))
        .then_nothing();
}

#[test]
fn stock_that_cannot_cover_the_order_is_refused() {
    given::<Product>(&[registered(), stock_added(1, 1)])
        .when(decrease(order_id(), 2, Held::Nothing))
        .then_err(ProductError::OutOfStock {
            available: 1,
            wanted: 2,
        });
}

#[test]
fn stock_taken_is_given_back_once_and_never_taken_again() {
    let history = [registered(), stock_added(5, 5), decreased(order_id(), 2, 3)];
    let increased = ProductEvent::QtyIncreased(QtyIncreased {
        product_id: product_id(),
        order_id: order_id(),
        order_status: OrderStatus::Cancelled,
        quantity: qty(2),
        stock_after: 5,
        at: at(4),
    });
    let give_back = |held| ProductCommand::IncreaseForOrder {
        order_id: order_id(),
        held,
        at: at(4),
    };
    given::<Product>(&history)
        .when(give_back(Held::Taken(qty(2))))
        .then(vec![increased.clone()]);
    let after = [
        registered(),
        stock_added(5, 5),
        decreased(order_id(), 2, 3),
        increased,
    ];
    given::<Product>(&after)
        .when(give_back(Held::GivenBack))
        .then_nothing();
    given::<Product>(&after)
        .when(decrease(order_id(), 2, Held::GivenBack))
        .then_err(ProductError::AlreadyGivenBack);
}

#[test]
fn giving_back_what_was_never_taken_changes_nothing() {
    given::<Product>(&[registered(), stock_added(5, 5)])
        .when(ProductCommand::IncreaseForOrder {
            order_id: order_id(),
            held: Held::Nothing,
            at: at(4),
        })
        .then_nothing();
}

#[test]
fn commands_on_an_unknown_product_are_refused() {
    given::<Product>(&[])
        .when(ProductCommand::AddStock {
            quantity: qty(1),
            change_id: None,
            at: at(1),
        })
        .then_err(ProductError::NotRegistered);
    given::<Product>(&[])
        .when(decrease(order_id(), 1, Held::Nothing))
        .then_err(ProductError::NotRegistered);
}

#[test]
fn stock_has_a_ceiling() {
    let max = domain::values::STOCK_MAX;
    given::<Product>(&[registered(), stock_added(i64::from(max), max)])
        .when(ProductCommand::AddStock {
            quantity: qty(1),
            change_id: None,
            at: at(1),
        })
        .then_err(ProductError::StockFull);
}

#[test]
fn a_product_registered_with_stock_records_both_at_once() {
    let register = ProductCommand::Register {
        product_id: product_id(),
        name: ProductName::parse("Green tea").unwrap(),
        price: eur(1250),
        initial_stock: Some(qty(5)),
        at: at(0),
    };
    let mut stocked = stock_added(5, 5);
    if let ProductEvent::StockAdded(e) = &mut stocked {
        e.at = at(0);
    }
    given::<Product>(&[])
        .when(register.clone())
        .then(vec![registered(), stocked.clone()]);
    // Registering again (a retried seed) adds no stock.
    given::<Product>(&[registered(), stocked])
        .when(register)
        .then_nothing();
}

#[test]
fn stock_added_with_a_change_id_is_added_once() {
    let change = uuid::Uuid::parse_str("2d2b6a1c-4a7e-4c61-9c0f-3a1b2c3d4e5f").unwrap();
    let add = ProductCommand::AddStock {
        quantity: qty(5),
        change_id: Some(change),
        at: at(1),
    };
    let mut added = stock_added(5, 5);
    if let ProductEvent::StockAdded(e) = &mut added {
        e.change_id = Some(change);
    }
    given::<Product>(&[registered()])
        .when(add.clone())
        .then(vec![added.clone()]);
    given::<Product>(&[registered(), added])
        .when(add)
        .then_nothing();
}

#[test]
fn the_stock_count_holds_the_whole_product() {
    let change = uuid::Uuid::parse_str("2d2b6a1c-4a7e-4c61-9c0f-3a1b2c3d4e5f").unwrap();
    let mut added = stock_added(5, 5);
    if let ProductEvent::StockAdded(e) = &mut added {
        e.change_id = Some(change);
    }
    let history = [registered(), added, decreased(order_id(), 2, 3)];
    let state = Product::fold(&history);
    let count = Product::snapshot(&state).expect("a registered product has a count");
    assert!(Product::is_snapshot(&count));
    // Loading from the count alone gives the same product: same stock, same known changes.
    assert_eq!(Product::fold([&count]), state);
    given::<Product>(&[count])
        .when(ProductCommand::AddStock {
            quantity: qty(5),
            change_id: Some(change),
            at: at(1),
        })
        .then_nothing();
    assert_eq!(Product::snapshot(&ProductState::NotRegistered), None);
}

#[test]
fn a_product_remembers_only_its_latest_stock_changes() {
    let mut history = vec![registered()];
    let changes: Vec<uuid::Uuid> = (0..=RECENT_CHANGES_MAX as u128)
        .map(uuid::Uuid::from_u128)
        .collect();
    for (n, change) in changes.iter().enumerate() {
        history.push(ProductEvent::StockAdded(StockAdded {
            product_id: product_id(),
            quantity: qty(1),
            stock_after: n as u32 + 1,
            change_id: Some(*change),
            at: at(1),
        }));
    }
    let ProductState::Registered(r) = Product::fold(&history) else {
        panic!("registered")
    };
    assert_eq!(r.recent_changes.len(), RECENT_CHANGES_MAX);
    assert!(!r.recent_changes.contains(&changes[0]));
    assert!(r.recent_changes.contains(&changes[RECENT_CHANGES_MAX]));
}
